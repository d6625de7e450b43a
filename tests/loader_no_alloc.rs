//! The background loader allocates nothing once its two buffers have their
//! size: batches, their augmentation, the epoch orders and the channels
//! between the threads all reuse what the first batches set up. Counted with
//! a wrapping global allocator on every thread; this file holds one test so
//! nothing else runs meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use xent::data::{self, Augment, BatchPlan, Dataset, Loader, Normalize};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
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
fn steady_state_loader_does_not_allocate() {
    // 600 images of 3 × 32 × 32 in batches of 128: five steps per epoch, the
    // last one of 88, so the counted steps cross short batches and epochs.
    let images = (0..600 * 3 * 32 * 32).map(|i| (i * 7 % 251) as u8).collect();
    let labels = (0..600).map(|i| i % 10).collect();
    let classes = data::numbered_classes(10);
    let ds = Dataset::new("synthetic", images, labels, [3, 32, 32], classes, 255).unwrap();
    let norm = Normalize::measure(&ds);
    let augment = Augment { crop_pad: 4, flip: true };
    let plan = BatchPlan {
        dataset: &ds,
        normalize: &norm,
        augment,
        seed: 1,
        batch_size: 128,
        drop_last_single: false,
    };

    std::thread::scope(|s| {
        let mut loader = Loader::spawn(s, plan, 1..=4).unwrap();

        // Warm up: both buffers reach full size, and both threads wait on
        // their channel once (the pause lets the loader fill the second
        // buffer and wait for the first), which sets up their wait slots.
        loader.next().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..2 {
            loader.next().unwrap().unwrap();
        }

        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        let mut batches = 0;
        while let Some(batch) = loader.next() {
            assert!(batch.is_ok());
            batches += 1;
        }
        COUNTING.store(false, Ordering::SeqCst);
        let count = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(batches, 17);
        assert_eq!(count, 0, "{count} allocations in {batches} steady-state batches");
    });
}
