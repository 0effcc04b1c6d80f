//! The reference workload in one plain tch program, for the host-overhead benchmark: exactly the
//! job of config/reference_mlp.yaml (Fashion-MNIST from Debian's package, bytes / 255, MLP
//! 784-128-10 with ReLU, Adam 1e-3, batch 128, seed 42, 5 epochs, the same batch loop, test
//! accuracy). Prints one JSON line: seconds, the training's seconds (model, optimiser and the
//! epochs) and accuracy.
//!
//! It does the process-level work the host does, no more and no less: bytes are scaled on
//! the run's threads (as the host's prepare stage fills its splits), and it exits without running
//! libtorch's exit-time destructors once its output is flushed (as `host` does).

use std::time::Instant;

use mnist_plugin::idx::read_idx;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn images(path: &str) -> anyhow::Result<(Tensor, i64)> {
    let array = read_idx(std::path::Path::new(path), 3)?;
    let mut scaled = vec![0f32; array.data.len()];
    host::hashing::fill_in_parallel(&mut scaled, |first, chunk| {
        for (value, &byte) in chunk.iter_mut().zip(&array.data[first..]) {
            *value = byte as f32 * (1.0 / 255.0);
        }
    });
    let n = array.dims[0] as i64;
    Ok((Tensor::from_slice(&scaled).view([n, 784]), n))
}

fn labels(path: &str) -> anyhow::Result<Tensor> {
    let array = read_idx(std::path::Path::new(path), 1)?;
    let labels: Vec<i64> = array.data.iter().map(|&l| l as i64).collect();
    Ok(Tensor::from_slice(&labels))
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/usr/share/datasets/fashion-mnist".into());
    let threads: i32 = std::env::args().nth(2).map(|t| t.parse()).transpose()?.unwrap_or(2);
    tch::manual_seed(42);
    tch::set_num_threads(threads);
    host::hashing::set_work_threads(threads as usize);
    let (x_train, n) = images(&format!("{dir}/train-images-idx3-ubyte.gz"))?;
    let y_train = labels(&format!("{dir}/train-labels-idx1-ubyte.gz"))?;
    let (x_test, _) = images(&format!("{dir}/t10k-images-idx3-ubyte.gz"))?;
    let y_test = labels(&format!("{dir}/t10k-labels-idx1-ubyte.gz"))?;

    let training = Instant::now();
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq_t()
        .add_fn(|xs| xs.flatten(1, -1))
        .add(nn::linear(&root / "hidden0", 784, 128, Default::default()))
        .add_fn(|xs| xs.relu())
        .add(nn::linear(&root / "output", 128, 10, Default::default()));
    let mut optimizer = nn::Adam::default().build(&vs, 1e-3)?;
    let batch_size = 128i64;
    for _epoch in 1..=5 {
        let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        // The epoch's loss and training accuracy, summed on tensors and read once an epoch.
        let mut loss_sum = Tensor::zeros([0i64; 0], (Kind::Double, Device::Cpu));
        let mut correct = Tensor::zeros([0i64; 0], (Kind::Int64, Device::Cpu));
        for start in (0..n).step_by(batch_size as usize) {
            let len = (n - start).min(batch_size);
            let index = order.narrow(0, start, len);
            let (xb, yb) = (x_train.index_select(0, &index), y_train.index_select(0, &index));
            let logits = net.forward_t(&xb, true);
            let loss = logits.cross_entropy_for_logits(&yb);
            optimizer.backward_step(&loss);
            tch::no_grad(|| {
                loss_sum = &loss_sum + loss.to_kind(Kind::Double) * len;
                correct = &correct + logits.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64);
            });
        }
        std::hint::black_box((loss_sum.double_value(&[]) / n as f64, correct.int64_value(&[])));
    }
    let train_seconds = training.elapsed().as_secs_f64();
    let accuracy = tch::no_grad(|| {
        let logits = net.forward_t(&x_test, false);
        logits.argmax(-1, false).eq_tensor(&y_test).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
    });
    println!(
        "{}",
        serde_json::json!({
            "seconds": started.elapsed().as_secs_f64(),
            "train_seconds": train_seconds,
            "accuracy": accuracy
        })
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    // SAFETY: `_exit` ends the process at once; stdout is flushed and nothing else is pending.
    unsafe { libc::_exit(0) }
}
