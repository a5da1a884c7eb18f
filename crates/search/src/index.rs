//! The replica: a Tantivy index in RAM for the words (BM25, typo tolerance,
//! prefixes) plus coarse narrowing terms (kind, category path, geo cells),
//! and beside it the table of [`ListingDoc`]s by slot that every exact
//! filter reads. A Tantivy document carries only its slot; what the index
//! matched is then checked against the table, so the two never disagree on
//! a filter even between commits.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, RwLock},
};

use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, TantivyDocument, Term,
    columnar::ColumnValues,
    query::{EnableScoring, Query},
    schema::{
        FAST, Facet, FacetOptions, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing,
        TextOptions,
    },
    tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer},
};
use uuid::Uuid;

use crate::{
    geo,
    grid::Grid,
    model::{Categories, Envelope, Facts, ListingDoc, NO_CATEGORY, OwnerFacts},
    rank,
    titles::TitleWords,
};

/// The analyzer for titles, descriptions and queries: words, lower-cased,
/// accents folded ("café" finds "cafe").
pub const ANALYZER: &str = "rentify";

#[derive(Clone, Copy)]
pub struct Fields {
    pub slot: Field,
    pub id: Field,
    pub kind: Field,
    pub category: Field,
    pub geo: Field,
    pub title: Field,
    pub body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        slot: builder.add_u64_field("slot", FAST),
        id: builder.add_text_field("id", STRING),
        kind: builder.add_text_field("kind", STRING),
        category: builder.add_facet_field("category", FacetOptions::default()),
        geo: builder.add_text_field("geo", STRING),
        title: builder.add_text_field("title", text.clone()),
        body: builder.add_text_field("body", text),
    };
    (builder.build(), fields)
}

/// Every listing the replica knows, by slot, and their owners.
#[derive(Default)]
pub struct Table {
    pub slots: Vec<Option<ListingDoc>>,
    /// The same slots' [`Facts`], what searches scan.
    pub facts: Vec<Facts>,
    /// The same slots' busy [`Envelope`]s.
    pub busy: Vec<Envelope>,
    /// The same slots' listing ids (stale when empty: check [`Facts`]'s
    /// `LIVE` first). Ranking breaks ties by id, and ties are common (a
    /// price, an owner's quality), so a tie must not cost a document read.
    pub ids: Vec<Uuid>,
    pub by_id: HashMap<Uuid, u32>,
    pub owners: HashMap<Uuid, OwnerFacts>,
    /// Title words to slots, for suggestions.
    pub titles: TitleWords,
    /// Located slots by map cell, for radius searches.
    pub grid: Grid,
}

impl Table {
    pub fn get(&self, slot: u32) -> Option<&ListingDoc> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// Where the busy spans of `slot` lie.
    #[inline]
    pub fn busy(&self, slot: u32) -> Envelope {
        self.busy
            .get(slot as usize)
            .copied()
            .unwrap_or(Envelope::ALWAYS)
    }

    /// The listing id in `slot`, if it ever held one (a slot emptied since
    /// keeps its last id; its facts say it is not live).
    #[inline]
    pub fn id(&self, slot: u32) -> Option<Uuid> {
        self.ids.get(slot as usize).copied()
    }

    /// The facts of `slot` ([`Facts::EMPTY`] when it holds nothing).
    #[inline]
    pub fn facts(&self, slot: u32) -> &Facts {
        self.facts.get(slot as usize).unwrap_or(&Facts::EMPTY)
    }

    pub fn owner(&self, id: Uuid) -> Option<&OwnerFacts> {
        self.owners.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Stores `doc` in `slot` (a new slot is `slots.len()`), deriving its
    /// facts and filing its `title_words`.
    pub(crate) fn put(
        &mut self,
        slot: u32,
        doc: ListingDoc,
        title_words: Vec<String>,
        categories: &Categories,
    ) {
        let facts = self.derive(&doc, categories);
        self.titles.file(slot, title_words, facts.quality);
        if let Some(at) = self.get(slot).and_then(|old| old.location) {
            self.grid.remove(slot, at);
        }
        if let Some(at) = doc.location {
            self.grid.insert(slot, at);
        }
        let slot = slot as usize;
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, None);
            self.facts.resize(slot + 1, Facts::EMPTY);
            self.busy.resize(slot + 1, Envelope::ALWAYS);
            self.ids.resize(slot + 1, Uuid::nil());
        }
        self.facts[slot] = facts;
        self.ids[slot] = doc.id;
        self.busy[slot] = Envelope::of(&doc);
        self.slots[slot] = Some(doc);
    }

    fn derive(&self, doc: &ListingDoc, categories: &Categories) -> Facts {
        let owner = self.owner(doc.owner_id);
        let leaf = doc
            .category_id
            .and_then(|c| categories.position(c))
            .unwrap_or(NO_CATEGORY);
        Facts::new(doc, owner, leaf, rank::quality(doc, owner))
    }

    fn remove(&mut self, slot: u32) {
        if let Some(at) = self.get(slot).and_then(|old| old.location) {
            self.grid.remove(slot, at);
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = None;
            self.facts[slot as usize] = Facts::EMPTY;
            self.titles.unfile(slot);
        }
    }

    /// Records what changed about `owners` and re-derives their listings'
    /// facts (a scan, but owner events are rare).
    fn set_owners(&mut self, owners: HashMap<Uuid, OwnerFacts>, categories: &Categories) {
        if owners.is_empty() {
            return;
        }
        let changed: HashSet<Uuid> = owners.keys().copied().collect();
        self.owners.extend(owners);
        for slot in 0..self.slots.len() {
            if let Some(doc) = &self.slots[slot]
                && changed.contains(&doc.owner_id)
            {
                let facts = self.derive(doc, categories);
                self.facts[slot] = facts;
                self.titles.requalify(slot as u32, facts.quality);
            }
        }
    }
}

/// One complete replica: index, reader, writer and table.
pub struct Catalog {
    pub fields: Fields,
    pub categories: Categories,
    /// Each category's name as analysed words, for suggestions.
    pub category_words: Vec<(Uuid, Vec<String>)>,
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    pub table: RwLock<Table>,
}

impl Catalog {
    pub fn new(categories: Categories) -> tantivy::Result<Self> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        index.tokenizers().register(
            ANALYZER,
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
        );
        // One indexing thread: the replica shares two cores with the API.
        let writer = index.writer_with_num_threads(1, 64_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut catalog = Self {
            fields,
            categories,
            category_words: Vec::new(),
            index,
            reader,
            writer: Mutex::new(writer),
            table: RwLock::new(Table::default()),
        };
        catalog.category_words = catalog
            .categories
            .by_id
            .values()
            .map(|c| (c.id, catalog.analyze(&c.name)))
            .collect();
        Ok(catalog)
    }

    /// The words of `text` as the index sees them.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let Some(mut analyzer) = self.index.tokenizers().get(ANALYZER) else {
            return Vec::new();
        };
        let mut stream = analyzer.token_stream(text);
        let mut words = Vec::new();
        while let Some(token) = stream.next() {
            words.push(token.text.clone());
        }
        words
    }

    /// Adds or replaces `docs`, drops `gone` (listings no longer active)
    /// and makes it all searchable: the index commits and reloads while the
    /// table is locked, so a query never sees the table and the index
    /// disagree (searches wait for the few milliseconds of a commit).
    pub fn apply(
        &self,
        docs: Vec<ListingDoc>,
        gone: &[Uuid],
        owners: HashMap<Uuid, OwnerFacts>,
    ) -> tantivy::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        table.set_owners(owners, &self.categories);
        for id in gone {
            if let Some(slot) = table.by_id.remove(id) {
                table.remove(slot);
                writer.delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
            }
        }
        for doc in docs {
            let slot = match table.by_id.get(&doc.id) {
                Some(&slot) => {
                    writer.delete_term(Term::from_field_text(self.fields.id, &doc.id.to_string()));
                    slot
                }
                None => {
                    let slot = table.slots.len() as u32;
                    table.by_id.insert(doc.id, slot);
                    slot
                }
            };
            // Only fails when the indexing thread has died, which the
            // next commit reports.
            let _ = writer.add_document(self.document(slot, &doc));
            let title_words = self.analyze(&doc.title);
            table.put(slot, doc, title_words, &self.categories);
        }
        writer.commit()?;
        self.reader.reload()
    }

    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    fn document(&self, slot: u32, doc: &ListingDoc) -> TantivyDocument {
        let f = self.fields;
        let mut out = TantivyDocument::default();
        out.add_u64(f.slot, u64::from(slot));
        out.add_text(f.id, doc.id.to_string());
        out.add_text(f.kind, doc.kind.as_str());
        let mut body = String::with_capacity(doc.description.len() + 64);
        body.push_str(&doc.description);
        for item in &doc.included_items {
            body.push(' ');
            body.push_str(item);
        }
        if let Some(category) = doc.category_id {
            if let Some(path) = self.categories.path(category) {
                out.add_facet(
                    f.category,
                    Facet::from_text(&path).unwrap_or_else(|_| Facet::root()),
                );
            }
            for c in self.categories.lineage(category) {
                body.push(' ');
                body.push_str(&self.categories.by_id[&c].name);
            }
        }
        if let Some((lat, lng)) = doc.location {
            for cell in geo::cells(lat, lng) {
                out.add_text(f.geo, cell);
            }
        }
        out.add_text(f.title, &doc.title);
        out.add_text(f.body, body);
        out
    }
}

/// Hands `visit` the slot and BM25 score (1 without `scoring`) of every
/// live document `query` matches, segment by segment in document order.
/// Matches go straight to the caller's filter and tally, so each one's
/// facts are read once, while still in cache.
pub fn for_each_match(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    scoring: bool,
    mut visit: impl FnMut(u32, Score),
) -> tantivy::Result<()> {
    let weight = query.weight(if scoring {
        EnableScoring::enabled_from_searcher(searcher)
    } else {
        EnableScoring::disabled_from_searcher(searcher)
    })?;
    for segment in searcher.segment_readers() {
        // Every document has exactly one slot: read the dense column.
        let slots = segment
            .fast_fields()
            .u64("slot")?
            .first_or_default_col(u64::MAX);
        let alive = segment.alive_bitset();
        let mut push = |doc: DocId, score: Score| {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                visit(slots.get_val(doc) as u32, score);
            }
        };
        if scoring {
            weight.for_each(segment, &mut push)?;
        } else {
            weight.for_each_no_score(segment, &mut |docs: &[DocId]| {
                for &doc in docs {
                    push(doc, 1.0);
                }
            })?;
        }
    }
    Ok(())
}
