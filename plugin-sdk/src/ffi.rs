//! The ABI-stable layer: the root module, the FFI-safe mirror types and the `#[sabi_trait]`
//! objects. Nothing outside this crate names these types; `plugin` and `host` convert them to
//! and from the plain types in `types`.
//!
//! Evolution rules: new root-module fields and new trait methods go at the end only; changing
//! a type here changes the layout and needs an SDK minor version bump.
#![allow(non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
};

#[repr(u8)]
#[derive(StableAbi)]
pub enum FfiBuffer {
    F32(RVec<f32>),
    F64(RVec<f64>),
    I64(RVec<i64>),
    U8(RVec<u8>),
}

#[repr(u8)]
#[derive(StableAbi, Clone, Copy)]
pub enum FfiElements<'a> {
    F32(RSlice<'a, f32>),
    F64(RSlice<'a, f64>),
    I64(RSlice<'a, i64>),
    U8(RSlice<'a, u8>),
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiTensor {
    pub shape: RVec<u64>,
    pub data: FfiBuffer,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiTensorView<'a> {
    pub shape: RSlice<'a, u64>,
    pub data: FfiElements<'a>,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiDataView<'a> {
    pub features: FfiTensorView<'a>,
    pub targets: FfiTensorView<'a>,
    /// 0 classification, 1 regression.
    pub task: u8,
    pub outputs: u64,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiDataset {
    pub features: FfiTensor,
    pub targets: FfiTensor,
    pub task: u8,
    pub label_names: RVec<RString>,
    pub test_start: ROption<u64>,
    pub metadata_json: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiError {
    /// `ErrorKind::code`.
    pub kind: u8,
    pub message: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiConfigKey {
    pub section: RString,
    pub name: RString,
    /// `ConfigType::spelling`, so new types never change this layout.
    pub ty: RString,
    pub default_json: ROption<RString>,
    pub required: bool,
    pub description: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiClassInfo {
    /// `ClassKind::code`.
    pub kind: u8,
    pub name: RString,
    pub summary: RString,
    pub config_keys: RVec<FfiConfigKey>,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiManifest {
    pub plugin_name: RString,
    pub plugin_version: RString,
    pub sdk_version: RString,
    pub classes: RVec<FfiClassInfo>,
}

/// The callbacks a plugin may make into the host during a call.
#[sabi_trait]
pub trait FfiServices {
    fn log(&self, level: u8, message: RStr<'_>);
    fn progress(&self, done: u64, total: u64, message: RStr<'_>);
    fn metric(&self, name: RStr<'_>, step: u64, value: f64);
    fn should_stop(&self) -> bool;
    #[sabi(last_prefix_field)]
    fn artifact_dir(&self) -> RString;
}

pub type FfiServicesRef<'a> = FfiServices_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

#[sabi_trait]
pub trait FfiLoader: Send {
    /// Returns `LoadSummary` as JSON.
    fn load_data(&mut self, services: FfiServicesRef<'_>) -> RResult<RString, FfiError>;
    #[sabi(last_prefix_field)]
    fn extract_features_and_targets(&mut self, services: FfiServicesRef<'_>) -> RResult<FfiDataset, FfiError>;
}

#[sabi_trait]
pub trait FfiModel: Send {
    /// Returns the fit summary as JSON.
    fn fit(
        &mut self,
        train: FfiDataView<'_>,
        validation: ROption<FfiDataView<'_>>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RString, FfiError>;
    fn predict(&mut self, features: FfiTensorView<'_>, services: FfiServicesRef<'_>) -> RResult<FfiTensor, FfiError>;
    /// Returns a JSON object of metrics.
    fn evaluate(&mut self, data: FfiDataView<'_>, services: FfiServicesRef<'_>) -> RResult<RString, FfiError>;
    /// Returns a JSON object of metrics.
    fn custom_metrics(&mut self, y_true: FfiTensorView<'_>, y_pred: FfiTensorView<'_>) -> RResult<RString, FfiError>;
    /// Returns the files written.
    fn save(&mut self, dir: RStr<'_>) -> RResult<RVec<RString>, FfiError>;
    #[sabi(last_prefix_field)]
    fn load(&mut self, dir: RStr<'_>) -> RResult<(), FfiError>;
}

#[sabi_trait]
pub trait FfiReportGenerator: Send {
    fn generate_data_report(
        &mut self,
        input_json: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError>;
    fn generate_training_report(
        &mut self,
        input_json: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError>;
    fn generate_evaluation_report(
        &mut self,
        input_json: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError>;
    #[sabi(last_prefix_field)]
    fn generate_summary_report(
        &mut self,
        input_json: RStr<'_>,
        services: FfiServicesRef<'_>,
    ) -> RResult<RVec<RString>, FfiError>;
}

pub type FfiLoaderBox = FfiLoader_TO<'static, RBox<()>>;
pub type FfiModelBox = FfiModel_TO<'static, RBox<()>>;
pub type FfiReportGeneratorBox = FfiReportGenerator_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub manifest: extern "C" fn() -> FfiManifest,
    pub create_loader: extern "C" fn(
        class: RStr<'_>,
        config_json: RStr<'_>,
        context_json: RStr<'_>,
    ) -> RResult<FfiLoaderBox, FfiError>,
    pub create_model:
        extern "C" fn(class: RStr<'_>, config_json: RStr<'_>, context_json: RStr<'_>) -> RResult<FfiModelBox, FfiError>,
    #[sabi(last_prefix_field)]
    pub create_report_generator: extern "C" fn(
        class: RStr<'_>,
        config_json: RStr<'_>,
        context_json: RStr<'_>,
    ) -> RResult<FfiReportGeneratorBox, FfiError>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "provenance_plugin";
    const NAME: &'static str = "provenance_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
