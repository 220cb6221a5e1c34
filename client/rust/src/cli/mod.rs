//! Commands of the `sieve` tool, as a library so programs and tests can run them in-process:
//! `cli::run(Cli::parse_from(["sieve", "--addr", url, "eval", ...]))`.

pub mod bench;
mod collections;
mod eval;
mod ingest;
mod load;
mod output;
mod search;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{Client, ConnectOptions, proto};

/// Command-line client for a Sieve retrieval server.
#[derive(Debug, Parser)]
#[command(name = "sieve", version)]
pub struct Cli {
    /// Server address.
    #[arg(long, global = true, env = "SIEVE_ADDR", default_value = "http://127.0.0.1:7700")]
    addr: String,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "SIEVE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// PEM CA certificate that signed the server's certificate (https addresses; default: the
    /// Mozilla roots).
    #[arg(long, global = true, env = "SIEVE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (with --client-key).
    #[arg(long, global = true, env = "SIEVE_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "SIEVE_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server version, build and limits.
    Info,
    /// Snapshots of collections, kept on the server: create, list, restore, delete.
    #[command(subcommand)]
    Snapshots(SnapshotCommand),
    /// Exit 0 when the server (or `--service`) answers SERVING to a gRPC health check, else 1;
    /// for container health checks.
    Health {
        /// A service name such as sieve.v1.Search (default: the whole server).
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Create, list, inspect and delete collections.
    #[command(subcommand)]
    Collections(collections::Command),
    /// Stream documents from a JSON-lines file (`.gz` accepted) into a collection.
    Ingest(ingest::Args),
    /// Print documents by id.
    Get {
        /// Collection.
        #[arg(short, long, env = "SIEVE_COLLECTION")]
        collection: String,
        /// Document ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Include vectors.
        #[arg(long)]
        vectors: bool,
    },
    /// Delete documents by id.
    Delete {
        /// Collection.
        #[arg(short, long, env = "SIEVE_COLLECTION")]
        collection: String,
        /// Document ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Search a collection.
    Search(search::Args),
    /// Score texts for a query with a cross-encoder, best first.
    Rerank {
        /// The query.
        query: String,
        /// Texts to score.
        #[arg(required = true)]
        texts: Vec<String>,
        /// A loaded cross-encoder (default: the server's).
        #[arg(long)]
        model: Option<String>,
        /// Results to show (default all).
        #[arg(long)]
        top_n: Option<u32>,
    },
    /// Measure retrieval quality on a BEIR-format test collection: nDCG@10, Recall@100, MRR@10
    /// and latency per pipeline.
    Eval(eval::Args),
    /// Measure ingest or search throughput and latency against a running server.
    #[command(subcommand)]
    Bench(bench::Command),
    /// Through a cluster router: the cluster's partitions and shards.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The cluster's shape: partitions, each shard's held and assigned partitions, its lag.
    Shards,
    /// Give a partition to a shard (`--add`), take it from one (`--remove`: only once another
    /// replica, `--add`'s in a move, serves it caught up), or both to move it. Prints the partition's shards after.
    Assign {
        /// The partition.
        partition: u32,
        /// The shard to take it on.
        #[arg(long, default_value = "")]
        add: String,
        /// The shard to give it up.
        #[arg(long, default_value = "")]
        remove: String,
        /// How long `--remove` waits for another replica to catch up, in seconds (at most 600).
        #[arg(long, default_value_t = 60)]
        wait_secs: u32,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Write a consistent snapshot of a collection (writes to it wait meanwhile).
    Create {
        /// The collection.
        collection: String,
    },
    /// List snapshots, oldest first.
    List {
        /// Only this collection's.
        #[arg(short, long, default_value = "")]
        collection: String,
    },
    /// Create a new collection from a snapshot (its indexes are rebuilt).
    Restore {
        /// The snapshot's name, as `list` prints it.
        snapshot: String,
        /// The new collection's name.
        collection: String,
    },
    /// Delete a snapshot file.
    Delete {
        /// The snapshot's name.
        snapshot: String,
    },
    /// Through a cluster router: snapshot log partitions into the cluster's snapshot store,
    /// from which new or long-stopped replicas bootstrap; one JSON line per partition.
    Partitions {
        /// A partition to snapshot (repeatable; default: every one).
        #[arg(short, long = "partition")]
        partitions: Vec<u32>,
        /// Then remove the stream messages each snapshot covers.
        #[arg(long)]
        purge: bool,
    },
}

/// The key and TLS files the options name.
fn connect_options(cli: &Cli) -> anyhow::Result<ConnectOptions> {
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    Ok(ConnectOptions {
        api_key: cli.api_key.clone(),
        ca_cert: cli.ca_cert.as_ref().map(read).transpose()?,
        identity: match (&cli.client_cert, &cli.client_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::connect_with(&cli.addr, &connect_options(&cli)?).await?;
    match cli.command {
        Command::Health { service } => {
            let serving = client.serving(service).await?;
            println!("{}", if serving { "SERVING" } else { "NOT_SERVING" });
            return Ok(if serving { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Snapshots(command) => match command {
            SnapshotCommand::Create { collection } => {
                let snapshot = client.create_snapshot(collection).await?;
                println!("{}", serde_json::to_string_pretty(&output::snapshot(&snapshot))?);
            }
            SnapshotCommand::List { collection } => {
                for snapshot in client.list_snapshots(collection).await? {
                    println!("{}", serde_json::to_string(&output::snapshot(&snapshot))?);
                }
            }
            SnapshotCommand::Restore { snapshot, collection } => {
                let restored = client.restore_snapshot(snapshot, collection).await?;
                println!("{}", serde_json::to_string_pretty(&output::collection(&restored))?);
            }
            SnapshotCommand::Delete { snapshot } => {
                client.delete_snapshot(&snapshot).await?;
                println!("deleted {snapshot}");
            }
            SnapshotCommand::Partitions { partitions, purge } => {
                for snapshot in client.snapshot_partitions(partitions, purge).await? {
                    println!("{}", serde_json::to_string(&output::partition_snapshot(&snapshot))?);
                }
            }
        },
        Command::Cluster(ClusterCommand::Shards) => {
            let info = client.info().await?;
            let Some(cluster) = info.cluster.as_ref() else {
                anyhow::bail!("the server is a {} server, not a cluster router", info.role);
            };
            println!("{}", serde_json::to_string_pretty(&output::info(&info)["cluster"])?);
            if !cluster.unserved.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Cluster(ClusterCommand::Assign { partition, add, remove, wait_secs }) => {
            let wait_ms = wait_secs.saturating_mul(1000);
            let assigned = client.assign_partition(partition, add, remove, wait_ms).await?;
            let shown = serde_json::json!({
                "partition": partition, "epoch": assigned.epoch, "shards": assigned.shards,
            });
            println!("{}", serde_json::to_string(&shown)?);
        }
        Command::Info => {
            let info = client.info().await?;
            println!("{}", serde_json::to_string_pretty(&output::info(&info))?);
        }
        Command::Collections(command) => collections::run(&client, command).await?,
        Command::Ingest(args) => return ingest::run(&client, args).await,
        Command::Get { collection, ids, vectors } => {
            let response = client.get(collection, ids, vectors).await?;
            for doc in &response.documents {
                println!("{}", serde_json::to_string(&output::document(doc))?);
            }
            for id in &response.missing {
                eprintln!("not found: {id}");
            }
            if !response.missing.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Delete { collection, ids } => {
            let response = client.delete(collection, ids).await?;
            println!("deleted {} (sequence {})", response.deleted.len(), response.sequence);
            for id in &response.missing {
                eprintln!("not found: {id}");
            }
        }
        Command::Search(args) => search::run(&client, args).await?,
        Command::Rerank { query, texts, model, top_n } => {
            let request = proto::RerankRequest {
                query,
                texts: texts.clone(),
                top_n: top_n.unwrap_or(0),
                model: model.unwrap_or_default(),
                windows: false,
            };
            let response = client.rerank(request).await?;
            println!("{:>4}  {:>8}  {:>5}  TEXT", "RANK", "SCORE", "INDEX");
            for (rank, result) in response.results.iter().enumerate() {
                let text: String = texts[result.index as usize].chars().take(70).collect();
                println!("{:>4}  {:>8.4}  {:>5}  {text}", rank + 1, result.score, result.index);
            }
            println!(
                "\n{}: queue {:.2} ms, compute {:.2} ms",
                response.model,
                response.queue_micros as f64 / 1000.0,
                response.compute_micros as f64 / 1000.0
            );
        }
        Command::Eval(args) => return eval::run(&client, args).await,
        Command::Bench(command) => bench::run(&client, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}
