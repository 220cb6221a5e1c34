//! The BM25 index (tantivy): one analysed `body` field (title + text), the external id for
//! deletes, and the point id as a fast field so filters run inside the collector.

use std::path::Path;
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::index::SegmentId;
use tantivy::postings::Postings;
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight, BooleanQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::config::Analyzer;
use crate::error::{Context, Error, Result};
use crate::{PointId, Score, Seq};

/// Memory budget of one collection's index writer: a commit per batch keeps the arena small,
/// and every collection holds one.
const WRITER_MEMORY: usize = 20_000_000;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    pid: Field,
    body: Field,
}

/// Segments with fewer documents than this are merged by [`KeywordWriter::merge_small`]
/// (tantivy's `LogMergePolicy` puts every segment below 10,000 documents in one level).
pub(crate) const SMALL_SEGMENT: u32 = 10_000;

fn tokenizer_name(analyzer: Analyzer) -> &'static str {
    match analyzer {
        Analyzer::English => "sieve_english",
        Analyzer::Simple => "sieve_simple",
    }
}

fn schema(analyzer: Analyzer) -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("id", STRING);
    builder.add_u64_field("pid", NumericOptions::default().set_fast());
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(tokenizer_name(analyzer))
        .set_index_option(IndexRecordOption::WithFreqs);
    builder.add_text_field("body", TextOptions::default().set_indexing_options(indexing));
    builder.build()
}

fn register_analyzers(index: &Index) {
    let english = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::new(Language::English).expect("tantivy ships English stopwords"))
        .filter(Stemmer::new(Language::English))
        .build();
    let simple = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build();
    index.tokenizers().register(tokenizer_name(Analyzer::English), english);
    index.tokenizers().register(tokenizer_name(Analyzer::Simple), simple);
}

/// What a BM25 score depends on besides the document: the index's document and token
/// counts and each query term's document frequency. Summed over the shards of a cluster, it
/// scores every shard's documents as one index would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bm25Stats {
    /// Documents in the index (tantivy counts deleted ones until their segment is merged).
    pub documents: u64,
    /// Tokens in the indexed field over all those documents.
    pub tokens: u64,
    /// Documents containing each analysed query term, in query order.
    pub doc_freqs: Vec<u64>,
}

impl Bm25Stats {
    /// Adds another index's statistics for the same query. Empty statistics (the default:
    /// no index at all) add nothing and take on whatever is added to them.
    pub fn add(&mut self, other: &Bm25Stats) -> std::result::Result<(), String> {
        if *other == Bm25Stats::default() {
            return Ok(());
        }
        if *self == Bm25Stats::default() {
            *self = other.clone();
            return Ok(());
        }
        if other.doc_freqs.len() != self.doc_freqs.len() {
            return Err(format!(
                "statistics for {} terms cannot be added to statistics for {}",
                other.doc_freqs.len(),
                self.doc_freqs.len()
            ));
        }
        self.documents += other.documents;
        self.tokens += other.tokens;
        for (sum, add) in self.doc_freqs.iter_mut().zip(&other.doc_freqs) {
            *sum += add;
        }
        Ok(())
    }

    /// One BM25 weight per query term, as tantivy's term scorers build them.
    fn weights(&self) -> Vec<Bm25Weight> {
        let average =
            if self.documents == 0 { 0.0 } else { self.tokens as Score / self.documents as Score };
        self.doc_freqs
            .iter()
            .map(|&df| {
                Bm25Weight::for_one_term_without_explain(
                    df.min(self.documents),
                    self.documents,
                    average,
                )
            })
            .collect()
    }
}

/// Hands tantivy the given statistics instead of the searcher's own.
struct StatsProvider<'a> {
    stats: &'a Bm25Stats,
    terms: &'a [Term],
}

impl Bm25StatisticsProvider for StatsProvider<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        Ok(self.stats.tokens)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.documents)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let at = self.terms.iter().position(|t| t == term).ok_or_else(|| {
            tantivy::TantivyError::InvalidArgument(format!("no statistics for {term:?}"))
        })?;
        // tantivy's idf requires df <= N; statistics summed from inconsistent shards must not
        // panic the search.
        Ok(self.stats.doc_freqs[at].min(self.stats.documents))
    }
}

/// The read side of a collection's BM25 index.
pub(crate) struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

/// The write side; owned by the collection's single writer.
pub(crate) struct KeywordWriter {
    writer: IndexWriter,
    fields: Fields,
}

impl KeywordIndex {
    /// Opens the index at `dir` with the op sequence it was last committed at. `None` (reason
    /// logged) when it is missing, unreadable, fails its checksums or has another schema.
    pub(crate) fn open(
        dir: &Path,
        analyzer: Analyzer,
    ) -> Option<(KeywordIndex, KeywordWriter, Seq)> {
        if !dir.join("meta.json").exists() {
            return None;
        }
        match Self::open_checked(dir, analyzer) {
            Ok(opened) => Some(opened),
            Err(reason) => {
                tracing::warn!(index = %dir.display(), %reason, "BM25 index unusable; it will be rebuilt");
                None
            }
        }
    }

    fn open_checked(
        dir: &Path,
        analyzer: Analyzer,
    ) -> Result<(KeywordIndex, KeywordWriter, Seq), String> {
        let index = Index::open_in_dir(dir).map_err(|e| e.to_string())?;
        if index.schema() != schema(analyzer) {
            return Err("schema differs from the collection's settings".to_string());
        }
        let damaged = index.validate_checksum().map_err(|e| e.to_string())?;
        if !damaged.is_empty() {
            return Err(format!("files fail their checksums: {damaged:?}"));
        }
        let meta = index.load_metas().map_err(|e| e.to_string())?;
        let seq = match meta.payload.as_deref() {
            Some(payload) => payload
                .parse()
                .map_err(|_| format!("commit payload {payload:?} is not a sequence"))?,
            None => 0,
        };
        let (index, writer) = Self::attach(index).map_err(|e| e.to_string())?;
        Ok((index, writer, seq))
    }

    /// Creates an empty index at `dir`, replacing whatever is there.
    pub(crate) fn create(dir: &Path, analyzer: Analyzer) -> Result<(KeywordIndex, KeywordWriter)> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).context(format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        let index =
            Index::create_in_dir(dir, schema(analyzer)).context("creating the BM25 index")?;
        Self::attach(index)
    }

    fn attach(index: Index) -> Result<(KeywordIndex, KeywordWriter)> {
        register_analyzers(&index);
        let schema = index.schema();
        let field = |name| schema.get_field(name).context("BM25 index schema");
        let fields = Fields { id: field("id")?, pid: field("pid")?, body: field("body")? };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("opening a BM25 index reader")?;
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .context("opening the BM25 index writer")?;
        Ok((KeywordIndex { index, reader, fields }, KeywordWriter { writer, fields }))
    }

    /// Segments a search opens now.
    pub(crate) fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// Documents visible to searches (committed, deletes applied).
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The analysed query's terms, in query order (repeats kept: each counts in the score).
    fn terms(&self, query: &str) -> Result<Vec<Term>> {
        let mut analyzer =
            self.index.tokenizer_for_field(self.fields.body).context("BM25 analyzer")?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            terms.push(Term::from_field_text(self.fields.body, &stream.token().text));
        }
        Ok(terms)
    }

    /// This index's statistics for `query`: what BM25 needs besides the document itself.
    pub(crate) fn stats(&self, query: &str) -> Result<Bm25Stats> {
        self.stats_of(&self.reader.searcher(), &self.terms(query)?)
    }

    fn stats_of(&self, searcher: &tantivy::Searcher, terms: &[Term]) -> Result<Bm25Stats> {
        let documents = searcher.total_num_docs().context("BM25 statistics")?;
        let tokens = searcher.total_num_tokens(self.fields.body).context("BM25 statistics")?;
        let doc_freqs = terms
            .iter()
            .map(|term| searcher.doc_freq(term).context("BM25 statistics"))
            .collect::<Result<_>>()?;
        Ok(Bm25Stats { documents, tokens, doc_freqs })
    }

    /// Top `k` BM25 matches of the analysed query, among the points `accept` lets through
    /// when given, scored with `stats` (this index's own when `None`). Without `accept`
    /// tantivy can skip blocks that cannot reach the top `k`.
    ///
    /// Scores are re-computed as the sum of each term's BM25 in query order, so they depend
    /// only on the document and the statistics, never on how tantivy's segments are laid out
    /// or in which order its scorers add up; the caller orders ties.
    pub(crate) fn search(
        &self,
        query: &str,
        k: usize,
        accept: Option<Arc<dyn Fn(PointId) -> bool + Send + Sync>>,
        stats: Option<&Bm25Stats>,
    ) -> Result<Vec<(PointId, Score)>> {
        let terms = self.terms(query)?;
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let own;
        let stats = match stats {
            Some(stats) => stats,
            None => {
                // Same searcher and terms as the search: one analysis, one point in time.
                own = self.stats_of(&searcher, &terms)?;
                &own
            }
        };
        if stats.doc_freqs.len() != terms.len() {
            return Err(Error::InvalidArgument(format!(
                "BM25 statistics name {} terms; the query has {}",
                stats.doc_freqs.len(),
                terms.len()
            )));
        }
        let provider = StatsProvider { stats, terms: &terms };
        let query = BooleanQuery::new_multiterms_query(terms.clone());
        let top_k = TopDocs::with_limit(k).order_by_score();
        let top = match accept {
            Some(accept) => {
                let collector =
                    FilterCollector::new("pid".to_string(), move |pid: u64| accept(pid), top_k);
                searcher.search_with_statistics_provider(&query, &collector, &provider)
            }
            None => searcher.search_with_statistics_provider(&query, &top_k, &provider),
        }
        .context("BM25 search")?;
        let weights = stats.weights();
        let mut scored = vec![(PointId::MAX, 0.0 as Score); top.len()];
        let mut by_segment: Vec<(u32, u32, usize)> = top
            .iter()
            .enumerate()
            .map(|(at, (_, address))| (address.segment_ord, address.doc_id, at))
            .collect();
        by_segment.sort_unstable();
        for segment_hits in by_segment.chunk_by(|a, b| a.0 == b.0) {
            let segment = searcher.segment_reader(segment_hits[0].0);
            let pids = segment.fast_fields().u64("pid").context("pid column")?;
            let norms =
                segment.get_fieldnorms_reader(self.fields.body).context("BM25 field norms")?;
            for &(_, doc, at) in segment_hits {
                scored[at].0 = pids.first(doc).unwrap_or(PointId::MAX);
            }
            let postings = segment.inverted_index(self.fields.body).context("BM25 postings")?;
            // Term by term, documents ascending: one postings cursor per term and segment, and
            // every document's sum still adds its terms in query order.
            for (term, weight) in terms.iter().zip(&weights) {
                let Some(mut docs) = postings
                    .read_postings(term, IndexRecordOption::WithFreqs)
                    .context("BM25 postings")?
                else {
                    continue;
                };
                for &(_, doc, at) in segment_hits {
                    if docs.doc() < doc {
                        docs.seek(doc);
                    }
                    if docs.doc() == doc {
                        scored[at].1 += weight.score(norms.fieldnorm_id(doc), docs.term_freq());
                    }
                }
            }
        }
        Ok(scored)
    }

    fn reload(&self) -> Result<()> {
        self.reader.reload().context("reloading the BM25 reader")
    }
}

impl KeywordWriter {
    /// Stages a document version: removes earlier versions under this id, adds this one.
    pub(crate) fn upsert(&mut self, id: &str, pid: PointId, title: &str, text: &str) -> Result<()> {
        self.delete(id);
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.id, id);
        doc.add_u64(self.fields.pid, pid);
        doc.add_text(self.fields.body, format!("{title}\n{text}"));
        self.writer.add_document(doc).context("adding to the BM25 index")?;
        Ok(())
    }

    /// Stages the removal of every version under this id.
    pub(crate) fn delete(&mut self, id: &str) {
        self.writer.delete_term(Term::from_field_text(self.fields.id, id));
    }

    /// Commits staged changes as of op `seq` (recorded in the commit) and makes them visible.
    pub(crate) fn commit(&mut self, seq: Seq, index: &KeywordIndex) -> Result<()> {
        let mut prepared = self.writer.prepare_commit().context("preparing a BM25 commit")?;
        prepared.set_payload(&seq.to_string());
        prepared.commit().context("committing the BM25 index")?;
        index.reload()
    }

    /// Merges the index's segments below [`SMALL_SEGMENT`] documents into one when there are
    /// two or more (tantivy's merge policy leaves up to seven of them), then makes the result
    /// visible: every search opens each segment, so few segments are faster to search. The
    /// commit's sequence stays as it is. `false` when there was nothing to merge, or when
    /// tantivy's own merging holds those segments (a later call merges them).
    pub(crate) fn merge_small(&mut self, index: &KeywordIndex) -> Result<bool> {
        let small: Vec<SegmentId> = index
            .index
            .searchable_segment_metas()
            .context("listing BM25 segments")?
            .iter()
            .filter(|segment| segment.max_doc() < SMALL_SEGMENT)
            .map(|segment| segment.id())
            .collect();
        if small.len() < 2 {
            return Ok(false);
        }
        match self.writer.merge(&small).wait() {
            Ok(_) => {
                index.reload()?;
                Ok(true)
            }
            Err(e) => {
                tracing::debug!(error = %e, "BM25 segments not merged now");
                Ok(false)
            }
        }
    }

    /// Waits for background merges; call before dropping on shutdown.
    pub(crate) fn finish(self) -> Result<()> {
        self.writer.wait_merging_threads().context("finishing BM25 merges")
    }
}
