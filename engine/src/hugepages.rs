//! Transparent huge pages for the build's large random-access arrays.
//!
//! Graph construction reads rows and link blocks of random nodes: at 500k
//! × 384 f32 the rows alone are 768 MB, about 190k 4 KiB pages, so nearly
//! every distance computation also misses the TLB. Backed by 2 MiB pages
//! the same rows span 370 TLB entries. Where THP is enabled only on request
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`, the common
//! default), the build asks for it, and collapses pages already populated
//! (`MADV_COLLAPSE`, Linux 6.1+). A hint only: failures (older kernels, THP
//! disabled, no free huge pages) are ignored and change no result.

/// Huge page size assumed for alignment (x86-64, aarch64 with 4 KiB pages).
const HUGE: usize = 2 << 20;

/// Asks for the 2 MiB-aligned interior of `data` to be backed by huge pages.
pub(crate) fn advise<T>(data: &[T]) {
    let len = std::mem::size_of_val(data);
    if len < 4 * HUGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const MADV_COLLAPSE: libc::c_int = 25;
        let start = (data.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (data.as_ptr() as usize + len) / HUGE * HUGE;
        if end <= start {
            return;
        }
        // SAFETY: madvise with these advice values never changes the
        // contents of the range (it lies inside `data`'s allocation); it
        // only changes how the kernel backs it.
        unsafe {
            let p = start as *mut libc::c_void;
            libc::madvise(p, end - start, libc::MADV_HUGEPAGE);
            libc::madvise(p, end - start, MADV_COLLAPSE);
        }
    }
}
