//! Turning a validated search into a Tantivy query: words with typo
//! tolerance and a prefix on the last one, plus narrowing terms that add
//! no score (kind, geo cells). Everything exact happens in [`crate::rank`].

use tantivy::{
    Searcher, Term,
    query::{
        AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query,
        TermQuery,
    },
    schema::{Field, IndexRecordOption},
};

use crate::{geo, index::Catalog, params::Search};

/// Edits a word may be off by: none under 5 letters, one from 5, two from 9.
pub fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Title matches count double the description's.
const TITLE_BOOST: f32 = 2.0;
/// A typo-tolerant match scores below an exact one.
const FUZZY_BOOST: f32 = 0.5;

/// Whether `word` is in the vocabulary of `fields` (with `as_prefix`,
/// whether it starts a word there). Typos are only tried for words the
/// index does not know: a word that matches as typed is not widened to
/// its neighbours, as search engines drop typo tolerance when exact
/// matches exist (Typesense's `typo_tokens_threshold`), and the fuzzy
/// expansion is the dearest part of a query.
fn known(searcher: &Searcher, fields: &[(Field, f32)], word: &str, as_prefix: bool) -> bool {
    searcher.segment_readers().iter().any(|segment| {
        fields.iter().any(|&(field, _)| {
            let Ok(index) = segment.inverted_index(field) else {
                return false;
            };
            let terms = index.terms();
            if as_prefix {
                terms
                    .range()
                    .ge(word.as_bytes())
                    .into_stream()
                    .is_ok_and(|mut stream| {
                        stream.advance() && stream.key().starts_with(word.as_bytes())
                    })
            } else {
                terms.get(word.as_bytes()).is_ok_and(|info| info.is_some())
            }
        })
    })
}

fn word_query(
    searcher: &Searcher,
    fields: &[(Field, f32)],
    word: &str,
    last: bool,
) -> Box<dyn Query> {
    let budget = if known(searcher, fields, word, last) {
        0
    } else {
        typo_budget(word)
    };
    let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for &(field, boost) in fields {
        let term = Term::from_field_text(field, word);
        any.push((
            Occur::Should,
            Box::new(BoostQuery::new(
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                boost,
            )),
        ));
        let mut near = |query: FuzzyTermQuery| {
            any.push((
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(query), boost * FUZZY_BOOST)),
            ));
        };
        // The last word is a prefix as typed, or a whole word with typos:
        // a prefix *with* typos would expand to most of the dictionary.
        if last {
            near(FuzzyTermQuery::new_prefix(term.clone(), 0, true));
        }
        if budget > 0 {
            near(FuzzyTermQuery::new(term, budget, true));
        }
    }
    Box::new(BooleanQuery::new(any))
}

/// Every word must match (title or description); words of one or two
/// letters only help ranking, so "a", "de" or "2" never empty a result.
fn words_query(
    searcher: &Searcher,
    fields: &[(Field, f32)],
    words: &[String],
) -> Vec<(Occur, Box<dyn Query>)> {
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let occur = if word.chars().count() <= 2 && i + 1 < words.len() {
                Occur::Should
            } else {
                Occur::Must
            };
            (
                occur,
                word_query(searcher, fields, word, i + 1 == words.len()),
            )
        })
        .collect()
}

fn filter(query: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0)))
}

/// The index query for `search`, and whether it scores (it does when there
/// are words).
pub fn build(catalog: &Catalog, searcher: &Searcher, search: &Search) -> (Box<dyn Query>, bool) {
    let f = catalog.fields;
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let words = search
        .q
        .as_deref()
        .map(|q| catalog.analyze(q))
        .unwrap_or_default();
    let scoring = !words.is_empty();
    clauses.extend(words_query(
        searcher,
        &[(f.title, TITLE_BOOST), (f.body, 1.0)],
        &words,
    ));
    if let Some(kind) = search.kind {
        clauses.push(filter(Box::new(TermQuery::new(
            Term::from_field_text(f.kind, kind.as_str()),
            IndexRecordOption::Basic,
        ))));
    }
    if let (Some((lat, lng)), Some(radius)) = (search.center, search.radius_km)
        && let Some(cells) = geo::covering(lat, lng, radius)
    {
        let terms = cells
            .iter()
            .map(|c| Term::from_field_text(f.geo, c))
            .collect();
        clauses.push(filter(Box::new(BooleanQuery::new_multiterms_query(terms))));
    }
    if clauses.is_empty() {
        return (Box::new(AllQuery), false);
    }
    (Box::new(BooleanQuery::new(clauses)), scoring)
}

/// The query of a suggestion: title words, the last one a prefix.
pub fn suggest(catalog: &Catalog, searcher: &Searcher, q: &str) -> Option<Box<dyn Query>> {
    let words = catalog.analyze(q);
    if words.is_empty() {
        return None;
    }
    Some(Box::new(BooleanQuery::new(words_query(
        searcher,
        &[(catalog.fields.title, 1.0)],
        &words,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typo_budget_grows_with_the_word() {
        assert_eq!(typo_budget("bike"), 0);
        assert_eq!(typo_budget("drill"), 1);
        assert_eq!(typo_budget("mirrorless"), 2);
        assert_eq!(typo_budget("appareils"), 2);
        assert_eq!(typo_budget("caméra"), 1);
    }
}
