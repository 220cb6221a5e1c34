//! The BM25 index (tantivy): one analysed `body` field (title + text), the external id for
//! deletes, and the point id as a fast field so filters run inside the collector.

use std::path::Path;
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::BooleanQuery;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::config::Analyzer;
use crate::error::{Context, Result};
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

    /// Documents visible to searches (committed, deletes applied).
    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Top `k` BM25 matches of the analysed query, among the points `accept` lets through
    /// when given. Without it tantivy can skip blocks that cannot reach the top `k`.
    pub(crate) fn search(
        &self,
        query: &str,
        k: usize,
        accept: Option<Arc<dyn Fn(PointId) -> bool + Send + Sync>>,
    ) -> Result<Vec<(PointId, Score)>> {
        let mut analyzer =
            self.index.tokenizer_for_field(self.fields.body).context("BM25 analyzer")?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            terms.push(Term::from_field_text(self.fields.body, &stream.token().text));
        }
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let query = BooleanQuery::new_multiterms_query(terms);
        let searcher = self.reader.searcher();
        let top_k = TopDocs::with_limit(k).order_by_score();
        let top = match accept {
            Some(accept) => {
                let collector =
                    FilterCollector::new("pid".to_string(), move |pid: u64| accept(pid), top_k);
                searcher.search(&query, &collector)
            }
            None => searcher.search(&query, &top_k),
        }
        .context("BM25 search")?;
        top.into_iter()
            .map(|(score, address)| {
                let pids = searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("pid")
                    .context("pid column")?;
                let pid = pids.first(address.doc_id).unwrap_or(PointId::MAX);
                Ok((pid, score))
            })
            .collect()
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

    /// Waits for background merges; call before dropping on shutdown.
    pub(crate) fn finish(self) -> Result<()> {
        self.writer.wait_merging_threads().context("finishing BM25 merges")
    }
}
