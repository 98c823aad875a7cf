//! The wasm32 global allocator: power-of-two size classes, one free list each, on pages taken
//! with `memory.grow`.
//!
//! Why not a general-purpose allocator: in Envoy a module's cost is mostly what V8's optimising
//! compiler allocates while it compiles the module, and that grows with the code (see
//! docs/benchmarks.md, "Where the memory goes"). talc, the allocator before this one, was
//! 1.9 KB of the 30 KB add-header module. This one is a few hundred bytes. A filter allocates
//! small, short-lived strings and buffers of a few sizes per request, which size classes reuse
//! well; the price is up to 2× internal fragmentation and no coalescing, so a module that once
//! held a 1 MiB body keeps that block for the next 1 MiB body (wasm cannot give pages back
//! anyway).
//!
//! A block of class `k` is `2^k` bytes aligned to `min(2^k, 64 KiB)`, so any block of a class
//! satisfies every alignment that maps to it; requests aligned to more than 64 KiB fail.
//! Free blocks keep the next free block's address in their first 4 bytes. Wasm modules here
//! are single-threaded (no `atomics` target feature), which is what makes the `Sync` impl sound.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const PAGE: usize = 65_536;
/// Classes 3 (8 bytes) to 31 (2 GiB): 8 bytes hold the free-list link with room to spare.
const MIN_CLASS: u32 = 3;
const N_CLASSES: usize = 32;

/// The state: the free lists and the unused tail of the pages taken so far.
struct State {
    free: [*mut u8; N_CLASSES],
    /// Next unused byte; 0 before the first allocation.
    top: usize,
    /// End of the pages this allocator owns.
    end: usize,
}

/// The global allocator (see the module docs).
pub struct SizeClasses(UnsafeCell<State>);

impl SizeClasses {
    /// An allocator that owns no pages yet.
    pub const fn new() -> SizeClasses {
        SizeClasses(UnsafeCell::new(State {
            free: [null_mut(); N_CLASSES],
            top: 0,
            end: 0,
        }))
    }
}

// SAFETY: wasm32 without the `atomics` feature has one thread (abi/mod.rs refuses to compile
// with `atomics`), so `State` is never reached from two threads.
unsafe impl Sync for SizeClasses {}

/// The class of a layout, or `None` when it cannot be served.
fn class_of(layout: Layout) -> Option<u32> {
    if layout.align() > PAGE {
        return None;
    }
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    let class = usize::BITS - (size - 1).leading_zeros();
    (class < N_CLASSES as u32).then_some(class)
}

impl State {
    /// Carves a fresh block of `class` from the tail, growing memory when the tail is short.
    fn carve(&mut self, class: u32) -> *mut u8 {
        let size = 1usize << class;
        let align = size.min(PAGE);
        if self.top == 0 {
            // Start on the first page past what the module was linked with (its data, stack
            // and heap base), so the allocator never hands out memory the module uses.
            self.top = core::arch::wasm32::memory_size(0) * PAGE;
            self.end = self.top;
        }
        // Checked arithmetic: a wrapped address would hand out the module's own data.
        let Some(needed) = self
            .top
            .checked_add(align - 1)
            .map(|unaligned| unaligned & !(align - 1))
            .and_then(|start| start.checked_add(size))
        else {
            return null_mut();
        };
        let start = needed - size;
        if needed > self.end {
            let pages = (needed - self.end).div_ceil(PAGE);
            let Some(end) = self.end.checked_add(pages * PAGE) else {
                return null_mut();
            };
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return null_mut();
            }
            self.end = end;
        }
        self.top = needed;
        start as *mut u8
    }
}

// SAFETY: blocks are disjoint (each is carved once from the tail, then only moves between the
// allocator and one owner), at least `layout.size()` bytes, and aligned for `layout` (module
// docs); `dealloc` and `realloc` get back a block with the layout it was allocated with, as
// `GlobalAlloc` requires of callers, so `class_of` finds the same class.
unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return null_mut();
        };
        // SAFETY: one thread (the `Sync` impl), and no reference to the state outlives a call.
        let state = unsafe { &mut *self.0.get() };
        let head = state.free[class as usize];
        if head.is_null() {
            return state.carve(class);
        }
        // SAFETY: `head` is a free block of this class, whose first 4 bytes hold the next one.
        state.free[class as usize] = unsafe { head.cast::<*mut u8>().read() };
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return;
        };
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.0.get() };
        // SAFETY: `block` is a block of `class` (at least 8 bytes, aligned to 4) the caller
        // gives back, so nobody else reads or writes it any more.
        unsafe { block.cast::<*mut u8>().write(state.free[class as usize]) };
        state.free[class as usize] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc`'s contract: `new_size` rounded up to the alignment
        // does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if class_of(new_layout) == class_of(layout) {
            return block;
        }
        // SAFETY: `new_layout` has a non-zero size (`realloc`'s contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, disjoint and at least `min` bytes long.
            unsafe {
                core::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}
