//! Autocomplete: categories whose name starts like the words typed, then
//! listing titles that match them (the last word as a prefix, typos
//! forgiven like in search), best first and each title once.

use std::collections::HashSet;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use tantivy::collector::TopDocs;

use crate::{SearchIndex, model::ListingDoc, query};

/// One suggestion.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Suggestion {
    /// What to show and, if picked, to search for.
    pub text: String,
    /// `category` or `listing`.
    pub kind: &'static str,
    /// The category's id, or the best listing's with this title.
    pub id: Uuid,
    /// A category's slug (use it as `category=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

/// Categories shown before titles, at most.
const MAX_CATEGORIES: usize = 3;
/// Title matches ranked per suggestion request.
const CANDIDATES: usize = 64;

/// Whether every word of `typed` starts a word of `name` (in order of the
/// typed words, each matched once).
pub fn name_matches(name_words: &[String], typed: &[String]) -> bool {
    let mut used = vec![false; name_words.len()];
    typed.iter().all(|t| {
        name_words.iter().enumerate().any(|(i, w)| {
            let hit = !used[i] && w.starts_with(t.as_str());
            if hit {
                used[i] = true;
            }
            hit
        })
    })
}

impl SearchIndex {
    /// Up to `limit` suggestions for `q`.
    pub fn suggest(&self, q: &str, limit: usize) -> anyhow::Result<Vec<Suggestion>> {
        let catalog = self.catalog();
        let typed = catalog.analyze(q);
        let mut out: Vec<Suggestion> = Vec::new();
        let mut categories: Vec<_> = catalog
            .category_words
            .iter()
            .filter(|(_, words)| name_matches(words, &typed))
            .filter_map(|(id, _)| catalog.categories.by_id.get(id))
            .collect();
        categories.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(
            categories
                .into_iter()
                .take(MAX_CATEGORIES.min(limit))
                .map(|c| Suggestion {
                    text: c.name.clone(),
                    kind: "category",
                    id: c.id,
                    slug: Some(c.slug.clone()),
                }),
        );
        let mut titles: HashSet<String> = HashSet::new();
        let mut add = |out: &mut Vec<Suggestion>, doc: &ListingDoc| {
            let title = doc.title.trim();
            if !title.is_empty() && titles.insert(title.to_lowercase()) {
                out.push(Suggestion {
                    text: title.to_owned(),
                    kind: "listing",
                    id: doc.id,
                    slug: None,
                });
            }
        };
        if let [word] = typed.as_slice() {
            // One word, the usual case while typing: the titles with it,
            // then those with a word it starts, from the title word lists.
            let table = catalog.table.read().unwrap_or_else(|e| e.into_inner());
            let mut budget = CANDIDATES * 8;
            table.titles.best(word, |slot| {
                if let Some(doc) = table.get(slot) {
                    add(&mut out, doc);
                }
                budget -= 1;
                out.len() < limit && budget > 0
            });
            // Typos only when that leaves room (and the word is long
            // enough to allow one), like a search engine's typo threshold.
            if out.len() >= limit || query::typo_budget(word) == 0 {
                return Ok(out);
            }
        }
        let searcher = catalog.searcher();
        let Some(query) = query::suggest(&catalog, &searcher, q) else {
            return Ok(out);
        };
        // The best-scoring titles (exact words outrank prefixes and typos);
        // a few dozen are plenty to fill a short list with distinct ones.
        let top = searcher.search(
            query.as_ref(),
            &TopDocs::with_limit(CANDIDATES).order_by_score(),
        )?;
        let table = catalog.table.read().unwrap_or_else(|e| e.into_inner());
        let mut ranked: Vec<(f64, Uuid, u32)> = Vec::with_capacity(top.len());
        for (score, address) in top {
            let slots = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64("slot")?;
            let Some(slot) = slots.first(address.doc_id) else {
                continue;
            };
            let Some(doc) = table.get(slot as u32) else {
                continue;
            };
            let score = f64::from(score) * f64::from(table.facts(slot as u32).quality);
            ranked.push((-score, doc.id, slot as u32));
        }
        ranked.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, _, slot) in ranked {
            if out.len() >= limit {
                break;
            }
            if let Some(doc) = table.get(slot) {
                add(&mut out, doc);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_lowercase).collect()
    }

    #[test]
    fn category_names_match_by_word_prefixes() {
        assert!(name_matches(&words("Cameras & photo"), &words("cam")));
        assert!(name_matches(&words("Cameras & photo"), &words("pho cam")));
        assert!(!name_matches(&words("Power tools"), &words("po po")));
        assert!(!name_matches(&words("Lenses"), &words("len x")));
    }
}
