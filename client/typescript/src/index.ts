/**
 * The TypeScript client for Sieve: a thin, typed wrapper over the gRPC stubs generated from
 * `proto/` by ts-proto (`src/gen`), on `@grpc/grpc-js`.
 *
 *   const client = new Client("127.0.0.1:7700", { apiKey: process.env.SIEVE_API_KEY });
 *   await client.createCollection("papers");
 *   await client.ingest("papers", docs, { batchSize: 256 });
 *   const { hits } = await client.search("papers", "graph neural networks", { topK: 5 });
 */

import * as grpc from "@grpc/grpc-js";

import {
  AdminClient,
  AssignPartitionRequest,
  AssignPartitionResponse,
  CreateSnapshotRequest,
  DeleteSnapshotRequest,
  ListSnapshotsRequest,
  PartitionSnapshot,
  RestoreSnapshotRequest,
  Snapshot,
  SnapshotPartitionsRequest,
} from "./gen/sieve/v1/admin";
import {
  Collection,
  CollectionConfig,
  CollectionsClient,
  CreateCollectionRequest,
  DeleteCollectionRequest,
  Distance,
  GetCollectionRequest,
  ListCollectionsRequest,
} from "./gen/sieve/v1/collections";
import { Document as DocumentMessage, Filter, Value } from "./gen/sieve/v1/common";
import {
  DeleteRequest,
  DocumentsClient,
  GetRequest,
  IngestAck,
  IngestRequest,
} from "./gen/sieve/v1/documents";
import { GetInfoRequest, GetInfoResponse, InfoClient } from "./gen/sieve/v1/info";
import { RerankClient, RerankRequest } from "./gen/sieve/v1/rerank";
import {
  Done,
  Fusion,
  Hit as HitMessage,
  Mode,
  RetrieverHit,
  SearchClient,
  SearchEvent,
  SearchRequest,
  StageHits,
} from "./gen/sieve/v1/search";

import { toValue } from "./filters";
export { filters } from "./filters";
export type { AssignPartitionResponse, Collection, GetInfoResponse, IngestAck, PartitionSnapshot, Snapshot };

export type MetadataValue = string | number | boolean;

/** A document to ingest (`_id` is accepted for BEIR files), or one read back by `get`. */
export interface Document {
  id?: string;
  _id?: string;
  title?: string;
  text?: string;
  metadata?: Record<string, MetadataValue>;
  /** Empty: the collection's embedder (if any) makes the vector. */
  vector?: number[];
}

/** A call the server refused or could not finish: the gRPC status and the server's message. */
export class SieveError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${grpc.status[code]}: ${details}`);
    this.name = "SieveError";
  }

  /** The status name, e.g. "INVALID_ARGUMENT". */
  get codeName(): string {
    return grpc.status[this.code];
  }

  static from(error: unknown): SieveError {
    if (error instanceof SieveError) return error;
    const e = error as Partial<grpc.ServiceError>;
    if (typeof e?.code === "number") return new SieveError(e.code, e.details ?? String(error));
    return new SieveError(grpc.status.UNKNOWN, String(error));
  }
}

export interface RetrieverRank {
  rank: number;
  score: number;
}

export interface StageScore {
  stage: number;
  model: string;
  rank: number;
  score: number;
}

export interface Hit {
  id: string;
  /** The score of the stage that produced the list this hit is in. */
  score: number;
  title: string;
  text: string;
  metadata: Record<string, MetadataValue | null>;
  bm25?: RetrieverRank;
  dense?: RetrieverRank;
  fused?: RetrieverRank;
  stages: StageScore[];
  /** Not kept by the stage whose list this is: it follows the kept hits in first-stage order (`backfill`), and `score` is its fused score. */
  backfilled: boolean;
}

/** One stage's ranked list: "fused", then "rerank:1", "rerank:2", ... */
export interface Stage {
  kind: "stage";
  name: string;
  model: string;
  hits: Hit[];
}

/** The closing event of a search: what ran and where the time went. */
export interface SearchDone {
  kind: "done";
  mode: "bm25" | "dense" | "hybrid" | "unspecified";
  timingsMicros: Record<string, number>;
  bm25Candidates: number;
  denseCandidates: number;
  fusedCandidates: number;
  returned: number;
  raw: Done;
}

export interface SearchResult {
  stages: Stage[];
  done: SearchDone;
  /** The answer: the last stage's hits. */
  hits: Hit[];
}

export interface SearchOptions {
  /** Dense query vector; else the collection's embedder embeds the query text. */
  vector?: number[];
  topK?: number;
  mode?: "bm25" | "dense" | "hybrid";
  filter?: Filter;
  /** Rerank stages as `[model, keep]` or `"model:keep"`; default: the server's cascade. */
  /** Stages as [model, keep], [model, keep, minScore] or "model:keep" / "model:keep@minScore" (minScore: a raw logit the model must reach). */
  rerank?: Array<[string, number] | [string, number, number] | string>;
  noRerank?: boolean;
  /** Fused candidates entering the cascade (server default 50). */
  candidates?: number;
  bm25K?: number;
  denseK?: number;
  fusion?: "rrf" | "linear";
  rrfK?: number;
  bm25Weight?: number;
  denseWeight?: number;
  rerankWindows?: boolean;
  /** Each stage's list goes on, after the hits it keeps, with the other candidates in first-stage order. */
  backfill?: boolean;
  includeText?: boolean;
  /** Deadline of this call in milliseconds (default: the client's). */
  timeoutMs?: number;
}

export interface IngestOptions {
  batchSize?: number;
  /** Ids deleted in a last batch. */
  deleteIds?: string[];
  /** Batches sent but not yet acknowledged, at most (default 2). */
  maxInFlight?: number;
  timeoutMs?: number;
}

export interface IngestResult {
  accepted: string[];
  deleted: string[];
  /** Documents the server refused one by one; the rest of their batch landed. */
  errors: Array<{ id: string; code: string; message: string }>;
  batches: number;
  /** The collection's durable sequence number after the last batch. */
  sequence: number;
}

export interface RerankResult {
  index: number;
  score: number;
  text: string;
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** TLS with the system roots, or with `rootCerts` (PEM of the CA). */
  tls?: boolean;
  rootCerts?: Buffer;
  /** Client certificate and key (PEM), for servers that require one. */
  certChain?: Buffer;
  privateKey?: Buffer;
  /** Default deadline of every call, in milliseconds. */
  timeoutMs?: number;
  maxMessageBytes?: number;
}

const MODES: Record<string, Mode> = {
  bm25: Mode.MODE_BM25,
  dense: Mode.MODE_DENSE,
  hybrid: Mode.MODE_HYBRID,
};
const FUSIONS: Record<string, Fusion> = { rrf: Fusion.FUSION_RRF, linear: Fusion.FUSION_LINEAR };
const DISTANCES: Record<string, Distance> = {
  cosine: Distance.DISTANCE_COSINE,
  dot: Distance.DISTANCE_DOT,
  l2: Distance.DISTANCE_L2,
};

export { toValue as valueToProto };

function valueFromProto(value: Value | undefined): MetadataValue | null {
  return value?.kind ? value.kind.value : null;
}

function documentToProto(doc: Document): DocumentMessage {
  const id = doc.id ?? doc._id;
  if (typeof id !== "string") throw new TypeError(`a document needs a string id (or _id): ${JSON.stringify(doc)}`);
  const metadata: Record<string, Value> = {};
  for (const [key, value] of Object.entries(doc.metadata ?? {})) metadata[key] = toValue(value);
  return DocumentMessage.fromPartial({ id, title: doc.title ?? "", text: doc.text ?? "", metadata, vector: doc.vector ?? [] });
}

function documentFromProto(doc: DocumentMessage): Document {
  const metadata: Record<string, MetadataValue> = {};
  for (const [key, value] of Object.entries(doc.metadata)) {
    const v = valueFromProto(value);
    if (v !== null) metadata[key] = v;
  }
  return { id: doc.id, title: doc.title, text: doc.text, metadata, vector: doc.vector };
}

function rank(r: RetrieverHit | undefined): RetrieverRank | undefined {
  return r ? { rank: r.rank, score: r.score } : undefined;
}

function hitFromProto(hit: HitMessage): Hit {
  const metadata: Record<string, MetadataValue | null> = {};
  for (const [key, value] of Object.entries(hit.metadata)) metadata[key] = valueFromProto(value);
  return {
    id: hit.id,
    score: hit.score,
    title: hit.title,
    text: hit.text,
    metadata,
    bm25: rank(hit.bm25),
    dense: rank(hit.dense),
    fused: rank(hit.fused),
    stages: hit.stages.map((s) => ({ stage: s.stage, model: s.model, rank: s.rank, score: s.score })),
    backfilled: hit.backfilled,
  };
}

function stageFromProto(stage: StageHits): Stage {
  return { kind: "stage", name: stage.stage, model: stage.model, hits: stage.hits.map(hitFromProto) };
}

function doneFromProto(done: Done): SearchDone {
  const names: Record<number, SearchDone["mode"]> = {
    [Mode.MODE_BM25]: "bm25",
    [Mode.MODE_DENSE]: "dense",
    [Mode.MODE_HYBRID]: "hybrid",
  };
  return {
    kind: "done",
    mode: names[done.mode] ?? "unspecified",
    timingsMicros: Object.fromEntries(done.timings.map((t) => [t.phase, t.micros])),
    bm25Candidates: done.bm25Candidates,
    denseCandidates: done.denseCandidates,
    fusedCandidates: done.fusedCandidates,
    returned: done.returned,
    raw: done,
  };
}

/** The `SearchRequest` the search methods send. */
export function searchRequest(collection: string, query: string, options: SearchOptions = {}): SearchRequest {
  if (options.mode !== undefined && !(options.mode in MODES)) throw new RangeError(`mode is bm25, dense or hybrid, not ${options.mode}`);
  if (options.fusion !== undefined && !(options.fusion in FUSIONS)) throw new RangeError(`fusion is rrf or linear, not ${options.fusion}`);
  const rerank = (options.rerank ?? []).map((stage) => {
    if (typeof stage !== "string") return { model: stage[0], keep: stage[1], minScore: stage[2] };
    const at = stage.lastIndexOf(":");
    const [keepText, minText] = stage.slice(at + 1).split("@");
    const keep = Number(keepText);
    if (at < 0 || !Number.isInteger(keep) || keep < 0) throw new RangeError(`rerank stage "${stage}" is not model:keep or model:keep@minScore`);
    const minScore = minText === undefined ? undefined : Number(minText);
    if (minScore !== undefined && !Number.isFinite(minScore)) throw new RangeError(`rerank stage "${stage}": minScore is not a number`);
    return { model: stage.slice(0, at), keep, minScore };
  });
  return SearchRequest.fromPartial({
    collection,
    query,
    queryVector: options.vector ?? [],
    topK: options.topK ?? 10,
    filter: options.filter,
    includeText: options.includeText,
    plan: {
      mode: options.mode ? MODES[options.mode] : Mode.MODE_UNSPECIFIED,
      bm25K: options.bm25K ?? 0,
      denseK: options.denseK ?? 0,
      rrfK: options.rrfK,
      bm25Weight: options.bm25Weight,
      denseWeight: options.denseWeight,
      fusion: options.fusion ? FUSIONS[options.fusion] : Fusion.FUSION_UNSPECIFIED,
      rerank,
      noRerank: options.noRerank ?? false,
      candidates: options.candidates ?? 0,
      rerankWindows: options.rerankWindows ?? false,
      backfill: options.backfill,
    },
  });
}

type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** A connection to one Sieve server. */
export class Client {
  private readonly collections: CollectionsClient;
  private readonly documents: DocumentsClient;
  private readonly searchClient: SearchClient;
  private readonly rerankClient: RerankClient;
  private readonly infoClient: InfoClient;
  private readonly admin: AdminClient;
  private readonly metadata = new grpc.Metadata();
  private readonly timeoutMs?: number;

  constructor(address = "127.0.0.1:7700", options: ClientOptions = {}) {
    const secure = options.tls || options.rootCerts || options.certChain;
    const credentials = secure
      ? grpc.credentials.createSsl(options.rootCerts ?? null, options.privateKey ?? null, options.certChain ?? null)
      : grpc.credentials.createInsecure();
    const limit = options.maxMessageBytes ?? 64 << 20;
    const channelOptions = { "grpc.max_send_message_length": limit, "grpc.max_receive_message_length": limit };
    this.collections = new CollectionsClient(address, credentials, channelOptions);
    const channel = { channelOverride: this.collections.getChannel() };
    this.documents = new DocumentsClient(address, credentials, { ...channelOptions, ...channel });
    this.searchClient = new SearchClient(address, credentials, { ...channelOptions, ...channel });
    this.rerankClient = new RerankClient(address, credentials, { ...channelOptions, ...channel });
    this.infoClient = new InfoClient(address, credentials, { ...channelOptions, ...channel });
    this.admin = new AdminClient(address, credentials, { ...channelOptions, ...channel });
    if (options.apiKey) this.metadata.set("authorization", `Bearer ${options.apiKey}`);
    this.timeoutMs = options.timeoutMs;
  }

  close(): void {
    this.collections.close();
  }

  private callOptions(timeoutMs?: number): Partial<grpc.CallOptions> {
    const ms = timeoutMs ?? this.timeoutMs;
    return ms === undefined ? {} : { deadline: Date.now() + ms };
  }

  private unary<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, request: Req, timeoutMs?: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(client, request, this.metadata, this.callOptions(timeoutMs), (error, response) =>
        error ? reject(SieveError.from(error)) : resolve(response),
      );
    });
  }

  // --- server and collections -------------------------------------------------------------

  /** Version, limits, loaded models with their queues, default cascade. */
  info(timeoutMs?: number): Promise<GetInfoResponse> {
    return this.unary(this.infoClient, this.infoClient.getInfo, GetInfoRequest.fromPartial({}), timeoutMs);
  }

  /**
   * A new collection. With neither `dimension` nor `embedder` nor `keywordOnly`, it embeds
   * with the server's default embedder (keyword-only when there is none).
   */
  createCollection(
    name: string,
    options: {
      dimension?: number;
      distance?: "cosine" | "dot" | "l2";
      embedder?: string;
      keywordOnly?: boolean;
      analyzer?: string;
      hnsw?: { m?: number; efConstruction?: number; efSearch?: number };
      timeoutMs?: number;
    } = {},
  ): Promise<Collection> {
    const config: Partial<CollectionConfig> = { keywordOnly: options.keywordOnly ?? false };
    if (options.analyzer) config.keyword = { analyzer: options.analyzer };
    if (options.dimension || options.embedder) {
      const distance = DISTANCES[options.distance ?? "cosine"];
      if (distance === undefined) throw new RangeError(`distance is cosine, dot or l2, not ${options.distance}`);
      config.dense = {
        dimension: options.dimension ?? 0,
        distance,
        embedder: options.embedder ?? "",
        hnsw: { m: options.hnsw?.m ?? 0, efConstruction: options.hnsw?.efConstruction ?? 0, efSearch: options.hnsw?.efSearch ?? 0 },
      };
    }
    const request = CreateCollectionRequest.fromPartial({ name, config });
    return this.unary(this.collections, this.collections.createCollection, request, options.timeoutMs);
  }

  getCollection(name: string, timeoutMs?: number): Promise<Collection> {
    return this.unary(this.collections, this.collections.getCollection, GetCollectionRequest.fromPartial({ name }), timeoutMs);
  }

  async listCollections(timeoutMs?: number): Promise<Collection[]> {
    const response = await this.unary(this.collections, this.collections.listCollections, ListCollectionsRequest.fromPartial({}), timeoutMs);
    return response.collections;
  }

  async deleteCollection(name: string, timeoutMs?: number): Promise<void> {
    await this.unary(this.collections, this.collections.deleteCollection, DeleteCollectionRequest.fromPartial({ name }), timeoutMs);
  }

  // --- documents ----------------------------------------------------------------------------

  /**
   * Streams `documents` in batches on one `Ingest` stream and yields each ack once its batch is
   * durable and searchable. Honours backpressure: later batches take the server's
   * `nextBatchSize`, the sender waits `backoffMs` when told to, and at most `maxInFlight`
   * batches are unacknowledged. `deleteIds` go in a last batch.
   */
  async *ingestStream(
    collection: string,
    documents: Iterable<Document> | AsyncIterable<Document>,
    options: IngestOptions = {},
  ): AsyncGenerator<IngestAck> {
    let batchSize = options.batchSize ?? 256;
    const maxInFlight = options.maxInFlight ?? 2;
    if (batchSize < 1 || maxInFlight < 1) throw new RangeError("batchSize and maxInFlight must be at least 1");
    const call = this.documents.ingest(this.metadata, this.callOptions(options.timeoutMs));
    let inFlight = 0;
    let backoffMs = 0;
    let wake: (() => void) | undefined;
    let failed = false;
    const waitForRoom = async () => {
      while (inFlight >= maxInFlight && !failed) await new Promise<void>((resolve) => (wake = resolve));
    };
    const send = async (request: IngestRequest) => {
      await waitForRoom();
      if (failed) return;
      if (backoffMs > 0) {
        const ms = backoffMs;
        backoffMs = 0;
        await new Promise((resolve) => setTimeout(resolve, ms));
      }
      inFlight += 1;
      if (!call.write(request)) await new Promise((resolve) => call.once("drain", resolve));
    };
    const writer = (async () => {
      let batch: DocumentMessage[] = [];
      for await (const doc of documents as AsyncIterable<Document>) {
        if (failed) return;
        batch.push(documentToProto(doc));
        if (batch.length >= batchSize) {
          await send(IngestRequest.fromPartial({ collection, documents: batch }));
          batch = [];
        }
      }
      if (batch.length > 0) await send(IngestRequest.fromPartial({ collection, documents: batch }));
      if (options.deleteIds?.length) await send(IngestRequest.fromPartial({ collection, deleteIds: options.deleteIds }));
      call.end();
    })();
    writer.catch((error) => {
      failed = true;
      call.cancel();
      call.emit("error", error);
    });
    try {
      for await (const ack of call as AsyncIterable<IngestAck>) {
        inFlight -= 1;
        if (ack.nextBatchSize > 0) batchSize = ack.nextBatchSize;
        backoffMs = ack.backoffMs;
        wake?.();
        yield ack;
      }
      await writer;
    } catch (error) {
      throw SieveError.from(error);
    } finally {
      failed = true;
      wake?.();
      call.cancel();
    }
  }

  /** `ingestStream` run to the end: what was accepted, refused and deleted. */
  async ingest(collection: string, documents: Iterable<Document> | AsyncIterable<Document>, options: IngestOptions = {}): Promise<IngestResult> {
    const result: IngestResult = { accepted: [], deleted: [], errors: [], batches: 0, sequence: 0 };
    for await (const ack of this.ingestStream(collection, documents, options)) {
      result.batches += 1;
      result.accepted.push(...ack.accepted);
      result.deleted.push(...ack.deleted);
      for (const e of ack.errors) result.errors.push({ id: e.id, code: grpc.status[e.error?.code ?? 2], message: e.error?.message ?? "" });
      result.sequence = ack.sequence;
    }
    return result;
  }

  /** Documents by id, in request order; unknown ids in `missing`. */
  async get(collection: string, ids: string[], options: { includeVectors?: boolean; timeoutMs?: number } = {}): Promise<{ documents: Document[]; missing: string[] }> {
    const request = GetRequest.fromPartial({ collection, ids, includeVectors: options.includeVectors ?? false });
    const response = await this.unary(this.documents, this.documents.get, request, options.timeoutMs);
    return { documents: response.documents.map(documentFromProto), missing: response.missing };
  }

  /** Deletes by id, durably; ids that did not exist come back in `missing`. */
  async delete(collection: string, ids: string[], timeoutMs?: number): Promise<{ deleted: string[]; missing: string[]; sequence: number }> {
    const response = await this.unary(this.documents, this.documents.delete, DeleteRequest.fromPartial({ collection, ids }), timeoutMs);
    return { deleted: response.deleted, missing: response.missing, sequence: response.sequence };
  }

  // --- search and rerank --------------------------------------------------------------------

  /** Yields each stage's list as the server produces it, then the closing `done` event. */
  async *searchStages(collection: string, query: string, options: SearchOptions = {}): AsyncGenerator<Stage | SearchDone> {
    const call = this.searchClient.search(searchRequest(collection, query, options), this.metadata, this.callOptions(options.timeoutMs));
    try {
      for await (const event of call as AsyncIterable<SearchEvent>) {
        if (event.event?.$case === "hits") yield stageFromProto(event.event.value);
        else if (event.event?.$case === "done") yield doneFromProto(event.event.value);
      }
    } catch (error) {
      throw SieveError.from(error);
    } finally {
      call.cancel();
    }
  }

  /** Searches `collection`; `hits` is the answer, `stages` every stage's list. */
  async search(collection: string, query: string, options: SearchOptions = {}): Promise<SearchResult> {
    const stages: Stage[] = [];
    let done: SearchDone | undefined;
    for await (const event of this.searchStages(collection, query, options)) {
      if (event.kind === "stage") stages.push(event);
      else done = event;
    }
    if (!done) throw new SieveError(grpc.status.INTERNAL, "search stream ended without its done event");
    return { stages, done, hits: stages.length ? stages[stages.length - 1].hits : [] };
  }

  /** Scores each text for `query` with a loaded cross-encoder, best first. */
  async rerank(query: string, texts: string[], options: { model?: string; topN?: number; windows?: boolean; timeoutMs?: number } = {}): Promise<RerankResult[]> {
    const request = RerankRequest.fromPartial({ query, texts, model: options.model ?? "", topN: options.topN ?? 0, windows: options.windows ?? false });
    const response = await this.unary(this.rerankClient, this.rerankClient.rerank, request, options.timeoutMs);
    return response.results.map((r) => ({ index: r.index, score: r.score, text: texts[r.index] }));
  }

  // --- snapshots ----------------------------------------------------------------------------

  createSnapshot(collection: string, timeoutMs?: number): Promise<Snapshot> {
    return this.unary(this.admin, this.admin.createSnapshot, CreateSnapshotRequest.fromPartial({ collection }), timeoutMs);
  }

  async listSnapshots(collection = "", timeoutMs?: number): Promise<Snapshot[]> {
    const response = await this.unary(this.admin, this.admin.listSnapshots, ListSnapshotsRequest.fromPartial({ collection }), timeoutMs);
    return response.snapshots;
  }

  restoreSnapshot(snapshot: string, collection: string, timeoutMs?: number): Promise<Collection> {
    return this.unary(this.admin, this.admin.restoreSnapshot, RestoreSnapshotRequest.fromPartial({ snapshot, collection }), timeoutMs);
  }

  async deleteSnapshot(snapshot: string, timeoutMs?: number): Promise<void> {
    await this.unary(this.admin, this.admin.deleteSnapshot, DeleteSnapshotRequest.fromPartial({ snapshot }), timeoutMs);
  }

  /**
   * Cluster mode (a router): snapshots each of `partitions` (none: every one) at one stream
   * position into the cluster's snapshot store, in partition order; with `purge`, trims the
   * streams they cover. A standalone server answers FAILED_PRECONDITION.
   */
  async snapshotPartitions(partitions: number[] = [], purge = false, timeoutMs?: number): Promise<PartitionSnapshot[]> {
    const request = SnapshotPartitionsRequest.fromPartial({ partitions, purge });
    const response = await this.unary(this.admin, this.admin.snapshotPartitions, request, timeoutMs);
    return response.snapshots;
  }

  /**
   * Cluster mode (a router): gives `partition` to shard `add` and/or takes it from shard
   * `remove`, the latter only once another replica (`add`'s, in a move) serves it caught up (waiting up to `waitMs`;
   * 0: the server's 60 s). Both move it. Resolves to the assignment's epoch and the partition's
   * shards after. A standalone server answers FAILED_PRECONDITION.
   */
  async assignPartition(
    partition: number,
    change: { add?: string; remove?: string; waitMs?: number },
    timeoutMs?: number,
  ): Promise<AssignPartitionResponse> {
    const request = AssignPartitionRequest.fromPartial({
      partition,
      add: change.add ?? "",
      remove: change.remove ?? "",
      waitMs: change.waitMs ?? 0,
    });
    return this.unary(this.admin, this.admin.assignPartition, request, timeoutMs);
  }
}
