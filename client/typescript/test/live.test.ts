// The TypeScript client against the live server: create → ingest → search with a cascade →
// delete, filters, stage events, rerank, backpressure, snapshots, and errors as SieveError.
// The server: $SIEVE_SERVER_BIN or target/release/sieve-server; models: $SIEVE_MODELS_DIR or
// ../shared/models beside the checkout. Either missing fails the tests.

import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { Client, Document, SieveError, filters } from "../src";

const REPO = path.resolve(__dirname, "../../../..");
const EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2";
const CROSS_ENCODER = "sieve/sieve-ce-minilm-l6-scifact";
const ADMIN_KEY = "ts-admin-key";
const READ_KEY = "ts-read-key";
const QUESTION = "How do honeybees tell each other where the food is?";

function demoDocuments(): Document[] {
  return fs
    .readFileSync(path.join(REPO, "server/demo/corpus.jsonl"), "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

async function startServer(dir: string): Promise<{ process: ChildProcess; address: string }> {
  const binary = process.env.SIEVE_SERVER_BIN ?? path.join(REPO, "target/release/sieve-server");
  assert.ok(fs.existsSync(binary), `${binary} does not exist: build it (cargo build --release) or set SIEVE_SERVER_BIN`);
  const models = process.env.SIEVE_MODELS_DIR ?? path.join(REPO, "../shared/models");
  for (const model of [EMBEDDER, CROSS_ENCODER]) {
    const config = path.join(models, model.replace("/", "--"), "config.json");
    assert.ok(fs.existsSync(config), `model ${model} is missing: no ${config} (set SIEVE_MODELS_DIR)`);
  }
  const config = path.join(dir, "sieve.toml");
  fs.writeFileSync(
    config,
    `models_dir = ${JSON.stringify(models)}\ndefault_embedder = "${EMBEDDER}"\n` +
      `[[models]]\nname = "${EMBEDDER}"\n[[models]]\nname = "${CROSS_ENCODER}"\n`,
  );
  const child = spawn(binary, ["--config", config, "--data-dir", path.join(dir, "data"), "--listen", "127.0.0.1:0", "--log-level", "warn"], {
    env: { ...process.env, SIEVE_ADMIN_KEYS: ADMIN_KEY, SIEVE_READ_KEYS: READ_KEY },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("sieve-server did not report its address within 120 s")), 120_000);
    lines.on("line", (line) => {
      if (line.startsWith("sieve-server listening on ")) {
        clearTimeout(timer);
        resolve(line.split(" ").pop()!);
      }
    });
    child.once("exit", (code) => reject(new Error(`sieve-server exited with ${code}`)));
  });
  return { process: child, address };
}

describe("sieve client against the live server", () => {
  let server: { process: ChildProcess; address: string };
  let dir: string;
  let admin: Client;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "sieve-ts-"));
    server = await startServer(dir);
    admin = new Client(server.address, { apiKey: ADMIN_KEY, timeoutMs: 120_000 });
    const created = await admin.createCollection("ts-demo");
    assert.equal(created.config?.dense?.dimension, 384);
    const result = await admin.ingest("ts-demo", demoDocuments(), { batchSize: 10 });
    assert.deepEqual(result.errors, []);
    assert.deepEqual(result.accepted, demoDocuments().map((d) => d._id));
    assert.equal(result.sequence, 42);
    assert.ok(result.batches >= 3);
  });

  after(async () => {
    admin?.close();
    if (server) {
      const exited = new Promise((resolve) => server.process.once("exit", resolve));
      server.process.kill("SIGTERM");
      assert.equal(await exited, 0, "sieve-server exits cleanly on SIGTERM");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("hybrid search with a cascade, then delete", async () => {
    const result = await admin.search("ts-demo", QUESTION, { topK: 3, candidates: 10, rerank: [[CROSS_ENCODER, 3]] });
    assert.deepEqual(result.stages.map((s) => s.name), ["fused", "rerank:1"]);
    assert.equal(result.stages[1].model, CROSS_ENCODER);
    assert.equal(result.stages[0].hits.length, 10);
    assert.equal(result.hits.length, 3);
    const top = result.hits[0];
    assert.equal(top.id, "bees-dance");
    assert.equal(top.title, "How honeybees share directions");
    assert.deepEqual(top.metadata, { topic: "biology", year: 1967 });
    assert.equal(top.stages[0].rank, 1);
    assert.equal(top.score, top.stages[0].score);
    assert.ok(top.fused && top.bm25 && top.dense);
    const scores = result.hits.map((h) => h.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
    assert.equal(result.done.mode, "hybrid");
    assert.equal(result.done.returned, 3);

    const deleted = await admin.delete("ts-demo", ["bees-dance", "no-such-id"]);
    assert.deepEqual(deleted, { deleted: ["bees-dance"], missing: ["no-such-id"], sequence: 43 });
    const after = await admin.search("ts-demo", QUESTION, { topK: 10, noRerank: true });
    assert.ok(!after.hits.some((h) => h.id === "bees-dance"));
    const got = await admin.get("ts-demo", ["bees-dance", "bees-color"]);
    assert.deepEqual(got.documents.map((d) => d.id), ["bees-color"]);
    assert.deepEqual(got.missing, ["bees-dance"]);
    await admin.ingest("ts-demo", demoDocuments().filter((d) => d._id === "bees-dance"));
  });

  test("filters apply inside both retrievers", async () => {
    const filter = filters.allOf(filters.range("year", { gte: 1900 }), filters.anyOf("topic", ["geography", "history"]));
    const result = await admin.search("ts-demo", "rivers and floods", { topK: 20, noRerank: true, filter });
    assert.ok(result.hits.length > 0);
    for (const hit of result.hits) {
      assert.ok((hit.metadata.year as number) >= 1900);
      assert.ok(["geography", "history"].includes(hit.metadata.topic as string));
    }
    const bm25 = await admin.search("ts-demo", QUESTION, { topK: 5, noRerank: true, mode: "bm25", filter: filters.eq("topic", "biology") });
    assert.equal(bm25.done.mode, "bm25");
    assert.deepEqual(new Set(bm25.hits.map((h) => h.metadata.topic)), new Set(["biology"]));
  });

  test("stage events arrive in order", async () => {
    const kinds: string[] = [];
    for await (const event of admin.searchStages("ts-demo", QUESTION, { topK: 2, candidates: 5, rerank: [`${CROSS_ENCODER}:2`] })) {
      kinds.push(event.kind === "stage" ? `${event.name}:${event.hits.length}` : `done:${event.returned}`);
    }
    assert.deepEqual(kinds, ["fused:5", "rerank:1:2", "done:2"]);
  });

  test("rerank scores texts best first", async () => {
    const texts = ["Glaciers carve valleys.", "Vitamin D deficiency weakens bone.", "Bees dance."];
    const results = await admin.rerank("vitamin D and bones", texts, { model: CROSS_ENCODER });
    assert.equal(results[0].index, 1);
    assert.equal(results[0].text, "Vitamin D deficiency weakens bone.");
    assert.deepEqual(results.map((r) => r.index).sort(), [0, 1, 2]);
    assert.equal((await admin.rerank("vitamin D and bones", texts, { model: CROSS_ENCODER, topN: 1 })).length, 1);
  });

  test("ingest follows the server's batch size advice", async () => {
    await admin.createCollection("ts-vectors", { dimension: 8, distance: "cosine" });
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    const docs: Document[] = Array.from({ length: 3000 }, (_, i) => ({
      id: `v${i}`,
      text: `vector document ${i}`,
      vector: Array.from({ length: 8 }, random),
    }));
    docs.splice(5, 0, { id: "bad", text: "wrong dimension", vector: [1, 2] });
    const acks = [];
    for await (const ack of admin.ingestStream("ts-vectors", docs, { batchSize: 50, deleteIds: ["v0", "v1"] })) acks.push(ack);
    const sizes = acks.map((a) => a.accepted.length + a.errors.length);
    const advice = acks.map((a) => a.nextBatchSize);
    assert.equal(sizes[0], 50);
    // Pipelined (2 in flight): each batch takes the latest advice its sender had seen.
    for (let i = 1; i < sizes.length - 2; i++) {
      assert.ok([50, ...advice.slice(0, i)].includes(sizes[i]), `sizes ${sizes}, advice ${advice}`);
    }
    assert.ok(Math.max(...sizes) >= 400, `the advice to grow was followed: ${sizes}`);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 3001);
    assert.equal(acks[0].errors[0].id, "bad");
    assert.equal(acks[0].errors[0].error?.code, 3);
    assert.match(acks[0].errors[0].error?.message ?? "", /dimension/);
    assert.deepEqual(acks[acks.length - 1].deleted, ["v0", "v1"]);
    const stats = (await admin.getCollection("ts-vectors")).stats;
    assert.deepEqual([stats?.documents, stats?.vectors], [2998, 2998]);
    const nearest = await admin.search("ts-vectors", "", { vector: docs[10].vector, mode: "dense", topK: 1 });
    assert.equal(nearest.hits[0].id, docs[10].id);
  });

  test("partition snapshots are for a cluster router", async () => {
    await assert.rejects(
      admin.snapshotPartitions([0], true),
      (e: SieveError) =>
        e.codeName === "FAILED_PRECONDITION" && e.message.includes("SnapshotPartitions is for a cluster router"),
    );
  });

  test("a cascade keeping few backfills in fused order", async () => {
    const result = await admin.search("ts-demo", QUESTION, { topK: 6, candidates: 8, rerank: [[CROSS_ENCODER, 2]], backfill: true });
    const fused = result.stages[0].hits;
    const last = result.hits;
    assert.equal(last.length, 6);
    const kept = last.slice(0, 2).map((h) => h.id);
    assert.ok(last.slice(0, 2).every((h) => !h.backfilled) && last.slice(2).every((h) => h.backfilled && h.stages.length === 0));
    const rest = fused.filter((h) => !kept.includes(h.id)).slice(0, 4).map((h) => [h.id, h.score]);
    assert.deepEqual(last.slice(2).map((h) => [h.id, h.score]), rest);
  });

  test("a stage threshold drops low scores even from the backfill", async () => {
    const plain = await admin.search("ts-demo", QUESTION, { topK: 8, candidates: 8, rerank: [[CROSS_ENCODER, 8]] });
    const cut = plain.hits[2].score;
    const result = await admin.search("ts-demo", QUESTION, { topK: 8, candidates: 8, rerank: [[CROSS_ENCODER, 8, cut]], backfill: true });
    assert.deepEqual(result.hits.map((h) => h.id), plain.hits.slice(0, 3).map((h) => h.id));
    assert.ok(result.hits.every((h) => !h.backfilled));
    await assert.rejects(
      admin.search("ts-demo", QUESTION, { candidates: 8, rerank: [[CROSS_ENCODER, 2, Number.NaN]] }),
      (e: SieveError) => e.codeName === "INVALID_ARGUMENT" && e.message.includes("plan.rerank[0].min_score: must be a finite number (a raw logit), got NaN"),
    );
  });

  test("partition assignment is for a cluster router", async () => {
    await assert.rejects(
      admin.assignPartition(0, { add: "shard-4", remove: "shard-1" }),
      (e: SieveError) =>
        e.codeName === "FAILED_PRECONDITION" && e.message.includes("AssignPartition is for a cluster router"),
    );
  });

  test("a snapshot round-trips", async () => {
    const snapshot = await admin.createSnapshot("ts-demo");
    assert.equal(snapshot.collection, "ts-demo");
    assert.equal(snapshot.documents, 42);
    assert.ok((await admin.listSnapshots("ts-demo")).some((s) => s.name === snapshot.name));
    const restored = await admin.restoreSnapshot(snapshot.name, "ts-restored");
    assert.equal(restored.stats?.documents, 42);
    const ids = demoDocuments().map((d) => d._id!);
    assert.deepEqual(await admin.get("ts-restored", ids, { includeVectors: true }), await admin.get("ts-demo", ids, { includeVectors: true }));
    await admin.deleteSnapshot(snapshot.name);
    await assert.rejects(admin.deleteSnapshot(snapshot.name), (e: SieveError) => e.codeName === "NOT_FOUND");
  });

  test("errors carry the gRPC status", async () => {
    await assert.rejects(admin.search("no-such-collection", "anything"), (e: SieveError) => {
      assert.ok(e instanceof SieveError);
      assert.equal(e.codeName, "NOT_FOUND");
      assert.match(e.details, /no-such-collection/);
      return true;
    });
    await assert.rejects(admin.search("ts-demo", QUESTION, { topK: 1_000_000 }), (e: SieveError) => {
      assert.equal(e.codeName, "INVALID_ARGUMENT");
      assert.equal(e.details, "top_k: 1000000 exceeds the limit of 1000 (max_top_k)");
      return true;
    });
    const reader = new Client(server.address, { apiKey: READ_KEY });
    assert.ok((await reader.search("ts-demo", QUESTION, { topK: 1, noRerank: true })).hits.length === 1);
    await assert.rejects(reader.delete("ts-demo", ["bees-color"]), (e: SieveError) => e.codeName === "PERMISSION_DENIED");
    reader.close();
    const anonymous = new Client(server.address);
    await assert.rejects(anonymous.listCollections(), (e: SieveError) => e.codeName === "UNAUTHENTICATED");
    anonymous.close();
    await assert.rejects(admin.createCollection("ts-demo"), (e: SieveError) => e.codeName === "ALREADY_EXISTS");
    await assert.rejects(admin.search("ts-demo", QUESTION, { rerank: ["no-keep"] }), /model:keep/);
  });
});
