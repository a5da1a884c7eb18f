//! Every title word of the replica, each with its listings best first:
//! what suggestions read. A two- or three-letter prefix starts tens of
//! thousands of titles; walking the few words it starts, each already in
//! quality order, finds the best handful in microseconds, where a prefix
//! query over the index would score every one of those listings.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet},
};

/// A listing in a word's list: quality descending (the bits of a positive
/// `f32`, inverted, sort like its value reversed), then slot.
type Entry = (u32, u32);

fn entry(quality: f32, slot: u32) -> Entry {
    (!quality.max(0.0).to_bits(), slot)
}

#[derive(Default)]
pub struct TitleWords {
    words: BTreeMap<String, BTreeSet<Entry>>,
    /// What each slot is filed under, to take it out again.
    filed: HashMap<u32, (Entry, Vec<String>)>,
}

impl TitleWords {
    /// Files `slot` under its title's `words` (analysed as the index
    /// analyses titles), replacing what it was filed under.
    pub fn file(&mut self, slot: u32, mut words: Vec<String>, quality: f32) {
        self.unfile(slot);
        words.sort_unstable();
        words.dedup();
        let at = entry(quality, slot);
        for word in &words {
            self.words.entry(word.clone()).or_default().insert(at);
        }
        self.filed.insert(slot, (at, words));
    }

    pub fn unfile(&mut self, slot: u32) {
        let Some((at, words)) = self.filed.remove(&slot) else {
            return;
        };
        for word in words {
            if let Some(list) = self.words.get_mut(&word) {
                list.remove(&at);
                if list.is_empty() {
                    self.words.remove(&word);
                }
            }
        }
    }

    /// Re-files `slot` under the same words with a new quality.
    pub fn requalify(&mut self, slot: u32, quality: f32) {
        if let Some((_, words)) = self.filed.get(&slot) {
            let words = words.clone();
            self.file(slot, words, quality);
        }
    }

    /// Hands `visit` the slots whose title has a word starting with
    /// `prefix`: those with the whole word first, then the rest, each
    /// group best first, until `visit` returns false.
    /// Each slot comes once, however many of its words match.
    pub fn best(&self, prefix: &str, mut visit: impl FnMut(u32) -> bool) {
        let mut seen = HashSet::new();
        let mut visit = |slot: u32| !seen.insert(slot) || visit(slot);
        if let Some(list) = self.words.get(prefix) {
            for &(_, slot) in list {
                if !visit(slot) {
                    return;
                }
            }
        }
        // The longer words, merged: each list's next entry in a min-heap.
        let mut lists: Vec<_> = self
            .words
            .range::<str, _>((
                std::ops::Bound::Excluded(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(word, _)| word.starts_with(prefix))
            .map(|(_, list)| list.iter())
            .collect();
        let mut heap: BinaryHeap<Reverse<(Entry, usize)>> = lists
            .iter_mut()
            .enumerate()
            .filter_map(|(i, list)| list.next().map(|&e| Reverse((e, i))))
            .collect();
        while let Some(Reverse((e, i))) = heap.pop() {
            if !visit(e.1) {
                return;
            }
            if let Some(&next) = lists[i].next() {
                heap.push(Reverse((next, i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn collect(t: &TitleWords, prefix: &str) -> Vec<u32> {
        let mut out = Vec::new();
        t.best(prefix, |slot| {
            out.push(slot);
            true
        });
        out
    }

    #[test]
    fn whole_words_first_then_prefixes_best_first() {
        let mut t = TitleWords::default();
        t.file(1, words("canon camera"), 1.1);
        t.file(2, words("cam strap"), 1.0);
        t.file(3, words("nikon camera camera"), 1.3);
        t.file(4, words("canoe"), 1.2);
        t.file(5, words("drill"), 1.4);
        assert_eq!(collect(&t, "cam"), [2, 3, 1]);
        assert_eq!(collect(&t, "ca"), [3, 4, 1, 2]);
        assert_eq!(collect(&t, "canon"), [1]);
        assert!(collect(&t, "x").is_empty());
        // A title change and a quality change are both followed.
        t.file(4, words("camping stove"), 1.2);
        t.requalify(2, 1.5);
        assert_eq!(collect(&t, "cam"), [2, 3, 4, 1]);
        t.unfile(3);
        assert_eq!(collect(&t, "cam"), [2, 4, 1]);
        assert!(!t.words.contains_key("nikon"), "empty words are dropped");
        // Stops when told to.
        let mut seen = 0;
        t.best("c", |_| {
            seen += 1;
            seen < 2
        });
        assert_eq!(seen, 2);
    }
}
