//! The CUDA backend, loaded on request, in a process of its own: libtorch decides once per
//! process whether CUDA exists, so this test must be the process's first libtorch call (the
//! library's unit tests seed libtorch on the CPU first).

use tch::{Device, Kind, Tensor};

#[test]
fn the_cuda_backend_loads_on_request_before_seeding_and_registers_with_libtorch() {
    torch_models::load_cuda_backend().expect("the pip wheel's libtorch has a CUDA backend");
    assert!(torch_models::load_cuda_backend().is_ok(), "loaded once, answered again");
    // As `apply_run_context` does: the backend first, then the seed (which asks about CUDA).
    tch::manual_seed(7);
    match Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))) {
        Ok(_) => {
            assert!(tch::Cuda::is_available());
            assert_eq!(torch_models::resolve_device("cuda").unwrap(), Device::Cuda(0));
        }
        // Without a GPU: libtorch now has CUDA kernels and looks for a driver, where without the
        // backend (or with it loaded after the first question) it has none ("Could not run
        // 'aten::empty.memory_format' with arguments from the 'CUDA' backend", "Cannot
        // initialize CUDA without ATen_cuda library").
        Err(error) => {
            let error = error.to_string();
            assert!(error.contains("NVIDIA driver") && !error.contains("ATen_cuda"), "{error}");
            assert!(!tch::Cuda::is_available());
            let refused = torch_models::resolve_device("cuda").unwrap_err().to_string();
            assert!(refused.contains("no CUDA device is available; use cpu or auto"), "{refused}");
            assert_eq!(torch_models::resolve_device("auto").unwrap(), Device::Cpu);
        }
    }
}
