//! `sieve collections ...`.

use crate::{Client, proto};
use clap::{Subcommand, ValueEnum};

use super::output;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a collection: dense with --dimension (client vectors) or --embedder (built-in),
    /// else the server's default embedder if it has one, else keyword-only.
    Create {
        /// Name: ASCII letters, digits, '_' and '-'.
        name: String,
        /// Vector dimension; enables dense retrieval with vectors you send.
        #[arg(long)]
        dimension: Option<u32>,
        /// Built-in embedder (a model the server loaded); documents and queries without vectors
        /// are embedded by the server.
        #[arg(long)]
        embedder: Option<String>,
        /// BM25 only, even if the server has a default embedder.
        #[arg(long, conflicts_with_all = ["dimension", "embedder"])]
        keyword_only: bool,
        /// Vector similarity.
        #[arg(long, value_enum, default_value_t = DistanceArg::Cosine)]
        distance: DistanceArg,
        /// HNSW links per node (default 16).
        #[arg(long)]
        m: Option<u32>,
        /// HNSW build candidate list (default 100).
        #[arg(long)]
        ef_construction: Option<u32>,
        /// HNSW search candidate list (default 100).
        #[arg(long)]
        ef_search: Option<u32>,
        /// BM25 text analysis.
        #[arg(long, value_enum, default_value_t = AnalyzerArg::English)]
        analyzer: AnalyzerArg,
    },
    /// List collections.
    List,
    /// Show one collection's settings and counts.
    Get {
        /// Name.
        name: String,
    },
    /// Delete a collection and all its documents.
    Delete {
        /// Name.
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DistanceArg {
    Cosine,
    Dot,
    L2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AnalyzerArg {
    English,
    Simple,
}

/// The collection settings the flags describe. Dense settings exist when a dimension or an
/// embedder is given (an embedder with no dimension takes the model's).
pub fn config(
    dimension: Option<u32>,
    embedder: Option<String>,
    keyword_only: bool,
    distance: DistanceArg,
    analyzer: AnalyzerArg,
    hnsw: proto::HnswParams,
) -> proto::CollectionConfig {
    let distance = match distance {
        DistanceArg::Cosine => proto::Distance::Cosine,
        DistanceArg::Dot => proto::Distance::Dot,
        DistanceArg::L2 => proto::Distance::L2,
    };
    let analyzer = match analyzer {
        AnalyzerArg::English => "english",
        AnalyzerArg::Simple => "simple",
    };
    let dense = (dimension.is_some() || embedder.is_some()).then(|| proto::DenseConfig {
        dimension: dimension.unwrap_or(0),
        distance: distance as i32,
        embedder: embedder.unwrap_or_default(),
        hnsw: Some(hnsw),
    });
    proto::CollectionConfig {
        dense,
        keyword: Some(proto::KeywordConfig { analyzer: analyzer.to_string() }),
        keyword_only,
    }
}

pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            name,
            dimension,
            embedder,
            keyword_only,
            distance,
            m,
            ef_construction,
            ef_search,
            analyzer,
        } => {
            let hnsw = proto::HnswParams {
                m: m.unwrap_or_default(),
                ef_construction: ef_construction.unwrap_or_default(),
                ef_search: ef_search.unwrap_or_default(),
            };
            let created = client
                .create_collection(
                    name,
                    config(dimension, embedder, keyword_only, distance, analyzer, hnsw),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&output::collection(&created))?);
        }
        Command::List => {
            let collections = client.list_collections().await?;
            println!(
                "{:<24} {:>10} {:>10} {:>6} {:<8} {:<8}",
                "NAME", "DOCUMENTS", "VECTORS", "DIM", "DISTANCE", "ANALYZER"
            );
            for c in &collections {
                let stats = c.stats.unwrap_or_default();
                let config = c.config.clone().unwrap_or_default();
                let (dimension, distance) = match &config.dense {
                    Some(d) => (
                        d.dimension.to_string(),
                        proto::Distance::try_from(d.distance)
                            .map_or("?", |d| d.as_str_name())
                            .trim_start_matches("DISTANCE_")
                            .to_lowercase(),
                    ),
                    None => ("-".to_string(), "-".to_string()),
                };
                let analyzer = config.keyword.map(|k| k.analyzer).unwrap_or_default();
                println!(
                    "{:<24} {:>10} {:>10} {:>6} {:<8} {:<8}",
                    c.name, stats.documents, stats.vectors, dimension, distance, analyzer
                );
            }
        }
        Command::Get { name } => {
            let collection = client.collection(name).await?;
            println!("{}", serde_json::to_string_pretty(&output::collection(&collection))?);
        }
        Command::Delete { name } => {
            client.delete_collection(&name).await?;
            println!("deleted collection '{name}'");
        }
    }
    Ok(())
}
