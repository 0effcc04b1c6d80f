//! Conversions between the plain types (`types`) and their ABI-stable mirrors (`ffi`), in one
//! place so that neither of the two imports the other's conversions. Moving an `RVec` never
//! copies its buffer; views borrow.

use abi_stable::std_types::RString;

use crate::ffi::{
    FfiClassInfo, FfiConfigKey, FfiDataView, FfiDataset, FfiElements, FfiManifest, FfiTensor, FfiTensorView,
};
use crate::types::{
    ClassInfo, ClassKind, ConfigKey, ConfigType, DataView, Dataset, Elements, Manifest, PluginError, ShapeError,
    TaskKind, Tensor, TensorView, check_shape,
};

impl Tensor {
    pub(crate) fn from_ffi(tensor: FfiTensor) -> Result<Self, ShapeError> {
        let shape: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
        let tensor = Tensor { shape, buffer: tensor.data };
        check_shape(&tensor.shape, tensor.elements().len())?;
        Ok(tensor)
    }

    pub(crate) fn into_ffi(self) -> FfiTensor {
        FfiTensor { shape: self.shape.iter().map(|&d| d as u64).collect(), data: self.buffer }
    }
}

pub(crate) fn task_code(task: TaskKind) -> u8 {
    match task {
        TaskKind::Classification => 0,
        TaskKind::Regression => 1,
    }
}

pub(crate) fn task_from_code(code: u8) -> Result<TaskKind, PluginError> {
    match code {
        0 => Ok(TaskKind::Classification),
        1 => Ok(TaskKind::Regression),
        other => Err(PluginError::new(format!("unknown task code {other}"))),
    }
}

impl<'a> FfiElements<'a> {
    pub(crate) fn from_elements(elements: Elements<'a>) -> Self {
        match elements {
            Elements::F32(s) => FfiElements::F32(s.into()),
            Elements::F64(s) => FfiElements::F64(s.into()),
            Elements::I64(s) => FfiElements::I64(s.into()),
            Elements::U8(s) => FfiElements::U8(s.into()),
        }
    }

    pub(crate) fn into_elements(self) -> Elements<'a> {
        match self {
            FfiElements::F32(s) => Elements::F32(s.as_slice()),
            FfiElements::F64(s) => Elements::F64(s.as_slice()),
            FfiElements::I64(s) => Elements::I64(s.as_slice()),
            FfiElements::U8(s) => Elements::U8(s.as_slice()),
        }
    }
}

impl<'a> TensorView<'a> {
    pub(crate) fn from_ffi(view: FfiTensorView<'a>) -> Result<Self, ShapeError> {
        let shape = view.shape.iter().map(|&d| d as usize).collect();
        TensorView::new(shape, view.data.into_elements())
    }
}

/// A view's shape as `u64`, owned so that an `FfiTensorView` can borrow it.
pub(crate) fn shape_u64(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

impl<'a> FfiTensorView<'a> {
    pub(crate) fn new(shape: &'a [u64], elements: Elements<'a>) -> Self {
        FfiTensorView { shape: shape.into(), data: FfiElements::from_elements(elements) }
    }
}

impl<'a> DataView<'a> {
    pub(crate) fn from_ffi(view: FfiDataView<'a>) -> Result<Self, PluginError> {
        Ok(DataView {
            features: TensorView::from_ffi(view.features)?,
            targets: TensorView::from_ffi(view.targets)?,
            task: task_from_code(view.task)?,
            outputs: view.outputs as usize,
        })
    }
}

impl Dataset {
    pub(crate) fn into_ffi(self) -> FfiDataset {
        FfiDataset {
            features: self.features.into_ffi(),
            targets: self.targets.into_ffi(),
            task: task_code(self.task),
            label_names: self.label_names.into_iter().map(RString::from).collect(),
            test_start: self.test_start.map(|row| row as u64).into(),
            metadata_json: self.metadata.to_string().into(),
        }
    }

    pub(crate) fn from_ffi(dataset: FfiDataset) -> Result<Self, PluginError> {
        Ok(Dataset {
            features: Tensor::from_ffi(dataset.features)?,
            targets: Tensor::from_ffi(dataset.targets)?,
            task: task_from_code(dataset.task)?,
            label_names: dataset.label_names.into_iter().map(String::from).collect(),
            test_start: dataset.test_start.into_option().map(|row| row as usize),
            metadata: serde_json::from_str(dataset.metadata_json.as_str())?,
        })
    }
}

impl Manifest {
    pub(crate) fn into_ffi(self) -> FfiManifest {
        FfiManifest {
            plugin_name: self.plugin_name.into(),
            plugin_version: self.plugin_version.into(),
            sdk_version: self.sdk_version.into(),
            classes: self
                .classes
                .into_iter()
                .map(|class| FfiClassInfo {
                    kind: class.kind.code(),
                    name: class.name.into(),
                    summary: class.summary.into(),
                    config_keys: class
                        .config_keys
                        .into_iter()
                        .map(|key| FfiConfigKey {
                            section: key.section.into(),
                            name: key.name.into(),
                            ty: key.ty.spelling().into(),
                            default_json: key.default.map(|v| RString::from(v.to_string())).into(),
                            required: key.required,
                            description: key.description.into(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub(crate) fn from_ffi(manifest: FfiManifest) -> Result<Self, PluginError> {
        let mut classes = Vec::with_capacity(manifest.classes.len());
        for class in manifest.classes {
            let kind = ClassKind::from_code(class.kind).ok_or_else(|| {
                PluginError::new(format!("class {} has unknown kind code {}", class.name, class.kind))
            })?;
            let mut config_keys = Vec::with_capacity(class.config_keys.len());
            for key in class.config_keys {
                let default = match key.default_json.into_option() {
                    Some(json) => Some(serde_json::from_str(json.as_str()).map_err(|e| {
                        PluginError::new(format!("class {}: default of {}: {e}", class.name, key.name))
                    })?),
                    None => None,
                };
                config_keys.push(ConfigKey {
                    section: key.section.into(),
                    name: key.name.into(),
                    ty: ConfigType::parse(key.ty.as_str()),
                    default,
                    required: key.required,
                    description: key.description.into(),
                });
            }
            classes.push(ClassInfo { kind, name: class.name.into(), summary: class.summary.into(), config_keys });
        }
        let manifest = Manifest {
            plugin_name: manifest.plugin_name.into(),
            plugin_version: manifest.plugin_version.into(),
            sdk_version: manifest.sdk_version.into(),
            classes,
        };
        manifest.validate().map_err(PluginError::new)?;
        Ok(manifest)
    }
}
