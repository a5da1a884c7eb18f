//! Matches handed on a few places behind the order they arrive in, with
//! each one's [`Facts`] line requested from memory as it arrives.
//!
//! A search reads the facts of every match, and the matches of a word are
//! scattered over the table: read one at a time, each read waits for
//! memory (a quarter of a search's time in the profiles). Asking for the
//! next few lines before the current one is used lets those waits overlap.
//! The order is unchanged, so results are exactly those of the plain loop.

use crate::{index::Table, model::ListingDoc};

/// Matches in flight: enough to cover a memory round trip at a few
/// nanoseconds of work per match. A power of two.
const DEPTH: usize = 16;
/// Where in the queue a match's facts are looked at to fetch its document
/// too, when the filter will read its calendar.
const HALF: usize = DEPTH / 2;

/// A FIFO of `(slot, score)` in front of `visit`.
pub struct Ahead<'t, F: FnMut(u32, f32)> {
    table: &'t Table,
    /// The stay asked for, Unix seconds: its calendars are read.
    window: Option<(i64, i64)>,
    ring: [(u32, f32); DEPTH],
    pushed: usize,
    visit: F,
}

impl<'t, F: FnMut(u32, f32)> Ahead<'t, F> {
    pub fn new(table: &'t Table, window: Option<(i64, i64)>, visit: F) -> Self {
        Self {
            table,
            window,
            ring: [(0, 0.0); DEPTH],
            pushed: 0,
            visit,
        }
    }

    /// Queues a match, handing the oldest one on once the queue is full.
    #[inline]
    pub fn push(&mut self, slot: u32, score: f32) {
        let table = self.table;
        let at = slot as usize;
        if let Some(f) = table.facts.get(at) {
            prefetch(f);
        }
        if self.window.is_some()
            && let Some(e) = table.busy.get(at)
        {
            prefetch(e);
        }
        let n = self.pushed;
        if n >= DEPTH {
            let (oldest, oldest_score) = self.ring[n % DEPTH];
            (self.visit)(oldest, oldest_score);
        }
        self.ring[n % DEPTH] = (slot, score);
        // Half-way, the facts and envelope have arrived: a listing whose
        // calendar the filter will read has its document fetched now.
        if let Some((from, to)) = self.window
            && n >= HALF
        {
            let middle = self.ring[(n - HALF) % DEPTH].0 as usize;
            if table
                .facts
                .get(middle)
                .zip(table.busy.get(middle))
                .is_some_and(|(f, &busy)| f.calendar_decides(busy, from, to))
                && let Some(doc) = table.slots.get(middle)
            {
                prefetch_calendar(doc);
            }
        }
        self.pushed = n + 1;
    }

    /// Hands on what is still queued, in order.
    pub fn finish(mut self) {
        for n in self.pushed.saturating_sub(DEPTH)..self.pushed {
            let (slot, score) = self.ring[n % DEPTH];
            (self.visit)(slot, score);
        }
    }
}

/// The lines of a stored document that the calendar check reads first
/// (whether it is there, then its calendar), without reading them.
#[inline(always)]
fn prefetch_calendar(doc: &Option<ListingDoc>) {
    let base = (doc as *const Option<ListingDoc>).cast::<u8>();
    prefetch(base);
    // The payload of an `Option` of a struct with a niche starts where the
    // `Option` does in practice; a wrong guess costs a useless hint only.
    prefetch(base.wrapping_add(std::mem::offset_of!(ListingDoc, calendar)));
}

/// Asks the CPU to bring the cache line at `at` closer. A hint only: it
/// never faults and changes no result.
#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no architectural effect and never faults, for
    // any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_match_is_handed_on_once_in_order() {
        let table = Table::default();
        for (n, window) in [0, 1, HALF, DEPTH - 1, DEPTH, DEPTH + 1, 3 * DEPTH + 5]
            .into_iter()
            .zip([None, Some((0, 86_400))].into_iter().cycle())
        {
            let mut seen = Vec::new();
            let mut ahead = Ahead::new(&table, window, |slot, score| seen.push((slot, score)));
            for i in 0..n as u32 {
                // Slots the table lacks are handed on too (the caller decides).
                ahead.push(i * 7 % 130, i as f32);
            }
            ahead.finish();
            let expected: Vec<(u32, f32)> =
                (0..n as u32).map(|i| (i * 7 % 130, i as f32)).collect();
            assert_eq!(seen, expected, "{n} matches");
        }
    }
}
