//! A training step of a fixed batch shape allocates nothing once its buffers
//! exist: every layer, the loss, the optimiser and the thread pool reuse what
//! the first steps sized. Counted with a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use xent::bench::{self, train_step, WORKLOADS};
use xent::optim::OptimizerConfig;
use xent::rng::Rng;
use xent::Tensor;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the training pool's threads: only their allocations count, not
    /// the test harness's own bookkeeping on other threads.
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.load(Ordering::Relaxed) && TRACKED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_training_step_does_not_allocate() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(|_| {
            // Work stealing registers a thread with crossbeam-epoch the first
            // time it steals: a one-time allocation, which a thread slowed
            // by the machine's load may only make in the counted steps. Made
            // here, the count sees only the training steps' own.
            drop(crossbeam_epoch::pin());
            TRACKED.with(|t| t.set(true))
        })
        .build()
        .unwrap();
    pool.install(|| {
        for workload in &WORKLOADS {
            let mut net = bench::build(workload).unwrap();
            let mut config = OptimizerConfig::new(workload.optimizer);
            config.momentum = workload.momentum;
            let mut optimizer = config.build().unwrap();
            let n = 8;
            let mut rng = Rng::new(0, 0);
            let mut x = Tensor::zeros(&[n, 1, 28, 28]);
            x.data_mut().iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0));
            let targets: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
            let mut dlogits = Tensor::default();
            for _ in 0..3 {
                train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap();
            }

            ALLOCATIONS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            for _ in 0..5 {
                train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap();
            }
            COUNTING.store(false, Ordering::SeqCst);
            let count = ALLOCATIONS.load(Ordering::SeqCst);
            assert_eq!(count, 0, "{}: {count} allocations in 5 steady-state steps", workload.name);
        }
    });
}
