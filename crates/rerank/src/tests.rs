//! The cascade's rules with fake scorers: exact ranks, scores and placements, no checkpoint.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// Scores each passage from a table (an unknown passage is an inference error) and records
/// every call: (query, passages, windows).
struct Table {
    name: &'static str,
    scores: HashMap<String, f32>,
    calls: Mutex<Vec<(String, Vec<String>, bool)>>,
}

impl Table {
    fn new(name: &'static str, scores: &[(&str, f32)]) -> Arc<Table> {
        let scores = scores.iter().map(|&(p, s)| (p.to_string(), s)).collect();
        Arc::new(Table { name, scores, calls: Mutex::new(Vec::new()) })
    }

    fn calls(&self) -> Vec<(String, Vec<String>, bool)> {
        self.calls.lock().unwrap().clone()
    }
}

impl CrossEncoder for Table {
    fn name(&self) -> &str {
        self.name
    }

    fn score<'a>(
        &'a self,
        query: &'a str,
        passages: Vec<String>,
        windows: bool,
    ) -> ScoreFuture<'a> {
        self.calls.lock().unwrap().push((query.to_string(), passages.clone(), windows));
        let scores: Result<Vec<f32>, ModelError> = passages
            .iter()
            .map(|p| {
                self.scores.get(p).copied().ok_or_else(|| {
                    ModelError::Inference(format!("{} cannot score '{p}'", self.name))
                })
            })
            .collect();
        Box::pin(async move {
            Ok(Scored {
                scores: scores?,
                queue_time: Duration::from_millis(1),
                compute_time: Duration::from_millis(2),
            })
        })
    }
}

fn candidates(passages: &[&str]) -> Vec<Candidate> {
    passages.iter().map(|p| Candidate { passage: p.to_string() }).collect()
}

fn stage(model: &Arc<Table>, keep: usize) -> Stage {
    Stage { model: Arc::clone(model) as Arc<dyn CrossEncoder>, keep, min_score: None }
}

fn placed(stage: usize, model: &str, rank: u32, score: f32) -> StagePlacement {
    StagePlacement { stage, model: model.to_string(), rank, score }
}

const PASSAGES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[tokio::test]
async fn each_stage_scores_the_survivors_of_the_last_and_the_last_list_is_cut_to_top_k() {
    let small = Table::new(
        "small",
        &[("a", 0.1), ("b", 3.0), ("c", 2.0), ("d", 3.0), ("e", -1.0), ("f", 2.5)],
    );
    let large = Table::new("large", &[("b", 1.0), ("c", 5.0), ("d", 4.0), ("f", -2.0)]);
    let cascade = Cascade::new(vec![stage(&small, 4), stage(&large, 3)], 6).unwrap();
    let run = Run { query: "q", top_k: 2, windows: true, backfill: false, cache: None };
    let mut lists = Vec::new();
    let outcomes = cascade
        .run(&run, &candidates(&PASSAGES), |outcome, list| lists.push((outcome.stage, list)))
        .await
        .unwrap();

    // Stage 1 scores all six in first-stage order; b and d tie at 3.0 and keep that order.
    assert_eq!(small.calls(), [("q".to_string(), PASSAGES.map(String::from).to_vec(), true)]);
    assert_eq!(outcomes[0].kept, [(1, 3.0), (3, 3.0), (5, 2.5), (2, 2.0)]);
    assert_eq!(
        (outcomes[0].stage, outcomes[0].model.as_str(), outcomes[0].scored),
        (1, "small", 6)
    );
    assert_eq!(
        (outcomes[0].queue_time, outcomes[0].compute_time),
        (Duration::from_millis(1), Duration::from_millis(2))
    );
    // Stage 2 scores only those four, in stage 1's order.
    let second: Vec<String> = ["b", "d", "f", "c"].map(String::from).to_vec();
    assert_eq!(large.calls(), [("q".to_string(), second, true)]);
    assert_eq!(outcomes[1].kept, [(2, 5.0), (3, 4.0), (1, 1.0)]);
    assert_eq!(outcomes[1].scored, 4);

    // Stage 1's list is whole; the last is cut to top_k, each hit with every placement.
    assert_eq!(lists.iter().map(|(s, l)| (*s, l.len())).collect::<Vec<_>>(), [(1, 4), (2, 2)]);
    assert_eq!(
        lists[0].1[1],
        Ranked { index: 3, score: Some(3.0), placements: vec![placed(1, "small", 2, 3.0)] }
    );
    assert_eq!(
        lists[1].1,
        [
            Ranked {
                index: 2,
                score: Some(5.0),
                placements: vec![placed(1, "small", 4, 2.0), placed(2, "large", 1, 5.0)],
            },
            Ranked {
                index: 3,
                score: Some(4.0),
                placements: vec![placed(1, "small", 2, 3.0), placed(2, "large", 2, 4.0)],
            },
        ]
    );
}

#[tokio::test]
async fn fewer_candidates_than_a_stage_keeps_are_all_kept() {
    let small = Table::new("small", &[("a", 1.0), ("b", 2.0)]);
    let cascade = Cascade::new(vec![stage(&small, 5)], 10).unwrap();
    let run = Run { query: "q", top_k: 10, windows: false, backfill: false, cache: None };
    let outcomes = cascade.run(&run, &candidates(&["a", "b"]), |_, _| {}).await.unwrap();
    assert_eq!(outcomes[0].kept, [(1, 2.0), (0, 1.0)]);
    // No candidates: each stage scores nothing and keeps nothing.
    let outcomes = cascade.run(&run, &[], |_, _| {}).await.unwrap();
    assert_eq!((outcomes[0].scored, outcomes[0].kept.len()), (0, 0));
}

#[tokio::test]
async fn a_failing_model_stops_the_cascade_with_its_error() {
    let small = Table::new("small", &[("a", 1.0), ("b", 2.0), ("c", 0.0)]);
    let broken = Table::new("broken", &[("a", 1.0)]);
    let after = Table::new("after", &[("b", 1.0)]);
    let cascade =
        Cascade::new(vec![stage(&small, 3), stage(&broken, 2), stage(&after, 1)], 3).unwrap();
    let run = Run { query: "q", top_k: 1, windows: false, backfill: false, cache: None };
    let mut seen = Vec::new();
    let err = cascade
        .run(&run, &candidates(&["a", "b", "c"]), |o, _| seen.push(o.stage))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "broken cannot score 'b'");
    assert!(matches!(err, RerankError::Model(ModelError::Inference(_))));
    assert_eq!(seen, [1], "the failed stage and those after it report nothing");
    assert!(after.calls().is_empty());
}

/// Returns one score fewer than it was given passages.
struct Short;

impl CrossEncoder for Short {
    fn name(&self) -> &str {
        "short"
    }

    fn score<'a>(&'a self, _: &'a str, passages: Vec<String>, _: bool) -> ScoreFuture<'a> {
        let scores = vec![0.0; passages.len() - 1];
        Box::pin(async move { Ok(Scored { scores, ..Scored::default() }) })
    }
}

#[tokio::test]
async fn a_model_returning_the_wrong_number_of_scores_is_an_error_not_a_misranking() {
    let cascade =
        Cascade::new(vec![Stage { model: Arc::new(Short), keep: 1, min_score: None }], 2).unwrap();
    let run = Run { query: "q", top_k: 1, windows: false, backfill: false, cache: None };
    let err = cascade.run(&run, &candidates(&["a", "b"]), |_, _| {}).await.unwrap_err();
    assert_eq!(err.to_string(), "model 'short' returned 1 scores for 2 passages");
}

#[test]
fn malformed_cascades_are_refused_with_the_field_named() {
    let model = Table::new("m", &[]);
    let err = |stages: Vec<Stage>| match Cascade::new(stages, 10) {
        Err(RerankError::InvalidCascade(why)) => why,
        _ => panic!("expected an invalid cascade"),
    };
    assert_eq!(err(vec![stage(&model, 0)]), "rerank[0].keep: must be at least 1");
    assert_eq!(
        err(vec![stage(&model, 11)]),
        "rerank[0].keep: 11 is more than the 10 candidates entering the cascade"
    );
    assert_eq!(
        err(vec![stage(&model, 5), stage(&model, 6)]),
        "rerank[1].keep: 6 is more than the 5 the previous stage keeps"
    );
}

#[test]
fn stage_specs_become_stages_of_the_models_found() {
    let small = Table::new("small", &[]);
    let find = |name: &str| -> Result<Arc<dyn CrossEncoder>, String> {
        match name {
            "small" => Ok(Arc::clone(&small) as Arc<dyn CrossEncoder>),
            other => Err(format!("no cross-encoder named '{other}' is loaded")),
        }
    };
    let spec = |model: &str, keep| StageSpec { model: model.to_string(), keep, min_score: None };
    let cascade = Cascade::from_specs(&[spec("small", 8), spec("small", 3)], 20, find).unwrap();
    let shape: Vec<(&str, usize)> =
        cascade.stages().iter().map(|s| (s.model.name(), s.keep)).collect();
    assert_eq!(shape, [("small", 8), ("small", 3)]);
    let refused = |specs: &[StageSpec]| match Cascade::from_specs(specs, 20, find) {
        Err(RerankError::InvalidCascade(why)) => why,
        _ => panic!("expected an invalid cascade"),
    };
    assert_eq!(
        refused(&[spec("small", 8), spec("large", 3)]),
        "plan.rerank[1].model: no cross-encoder named 'large' is loaded"
    );
    assert_eq!(
        refused(&[spec("small", 21)]),
        "plan.rerank[0].keep: 21 is more than the 20 candidates entering the cascade"
    );
}

#[test]
fn best_keeps_the_top_scores_and_input_order_on_ties() {
    let kept = best(&[7, 3, 9, 4, 1], &[0.5, 2.0, -1.0, 2.0, 0.5], 4);
    assert_eq!(kept, vec![(3, 2.0), (4, 2.0), (7, 0.5), (1, 0.5)]);
    assert_eq!(best(&[7, 3], &[1.0, 2.0], 5), vec![(3, 2.0), (7, 1.0)]);
}

#[test]
fn a_passage_is_the_title_then_the_text() {
    assert_eq!(passage("Bees", "They dance."), "Bees They dance.");
    assert_eq!(passage("", "They dance."), "They dance.");
    assert_eq!(passage("Bees", ""), "Bees");
    assert_eq!(passage("", ""), "");
}

#[tokio::test]
async fn backfilled_lists_go_on_with_the_other_candidates_in_first_stage_order() {
    let small = Table::new(
        "small",
        &[("a", 0.1), ("b", 3.0), ("c", 2.0), ("d", 3.5), ("e", -1.0), ("f", 2.5)],
    );
    let large = Table::new("large", &[("b", 1.0), ("d", 4.0), ("f", -2.0)]);
    let cascade = Cascade::new(vec![stage(&small, 3), stage(&large, 1)], 6).unwrap();
    let run = Run { query: "q", top_k: 4, windows: false, backfill: true, cache: None };
    let mut lists = Vec::new();
    cascade.run(&run, &candidates(&PASSAGES), |_, list| lists.push(list)).await.unwrap();
    let shape = |list: &[Ranked]| -> Vec<(usize, Option<f32>)> {
        list.iter().map(|r| (r.index, r.score)).collect()
    };
    // Stage 1 keeps d, b, f; then a, c, e in first-stage order (its list is whole).
    assert_eq!(
        shape(&lists[0]),
        [(3, Some(3.5)), (1, Some(3.0)), (5, Some(2.5)), (0, None), (2, None), (4, None)]
    );
    // Stage 2 scores only d, b, f and keeps d; then the rest in first-stage order, to top_k.
    assert_eq!(large.calls()[0].1, ["d", "b", "f"].map(String::from));
    assert_eq!(shape(&lists[1]), [(3, Some(4.0)), (0, None), (1, None), (2, None)]);
    // A backfilled hit keeps the placements of the stages that did keep it.
    assert_eq!(lists[1][2].placements, [placed(1, "small", 2, 3.0)]);
    assert!(lists[1][1].placements.is_empty());
}

#[tokio::test]
async fn a_threshold_drops_what_a_stage_scores_below_it_even_from_the_backfill() {
    let small = Table::new(
        "small",
        &[("a", 0.1), ("b", 3.0), ("c", 2.0), ("d", 3.5), ("e", -1.0), ("f", 2.5)],
    );
    let large = Table::new("large", &[("b", -4.0), ("c", -0.5), ("d", 4.0), ("f", 0.5)]);
    let stages = vec![
        Stage { min_score: Some(0.0), ..stage(&small, 4) },
        Stage { min_score: Some(0.0), ..stage(&large, 3) },
    ];
    let cascade = Cascade::new(stages, 6).unwrap();
    let run = Run { query: "q", top_k: 10, windows: false, backfill: true, cache: None };
    let mut lists = Vec::new();
    let outcomes =
        cascade.run(&run, &candidates(&PASSAGES), |_, list| lists.push(list)).await.unwrap();
    // Stage 1 keeps d, b, f, c (e scored -1.0 is out for good; a, at 0.1, is only not kept);
    // stage 2 keeps d and f (b and c scored below 0 are out). The backfill brings a alone.
    assert_eq!(outcomes[0].kept, [(3, 3.5), (1, 3.0), (5, 2.5), (2, 2.0)]);
    assert_eq!(outcomes[1].kept, [(3, 4.0), (5, 0.5)]);
    let ids: Vec<(usize, bool)> = lists[1].iter().map(|r| (r.index, r.score.is_some())).collect();
    assert_eq!(ids, [(3, true), (5, true), (0, false)]);
    // A threshold that is not a number is refused.
    let nan = Stage { min_score: Some(f32::NAN), ..stage(&small, 2) };
    match Cascade::new(vec![stage(&small, 3), nan], 6) {
        Err(RerankError::InvalidCascade(why)) => {
            assert_eq!(why, "rerank[1].min_score: must be a finite number (a raw logit), got NaN")
        }
        _ => panic!("expected an invalid cascade"),
    }
}

#[tokio::test]
async fn the_score_cache_spares_the_model_pairs_it_has_scored_and_misses_changed_passages() {
    let small = Table::new(
        "small",
        &[("a", 0.1), ("b", 3.0), ("c", 2.0), ("d", 3.5), ("e", -1.0), ("f", 2.5), ("e v2", 9.0)],
    );
    let large = Table::new("large", &[("b", 1.0), ("d", 4.0), ("f", -2.0), ("e v2", 0.0)]);
    let cache = ScoreCache::new(1 << 20);
    let cascade = Cascade::new(vec![stage(&small, 3), stage(&large, 2)], 6).unwrap();
    let run = Run { query: "q", top_k: 2, windows: false, backfill: false, cache: Some(&cache) };
    let first = cascade.run(&run, &candidates(&PASSAGES), |_, _| {}).await.unwrap();
    assert_eq!((first[0].cached, first[1].cached), (0, 0));
    assert_eq!(cache.len(), 9, "6 pairs of the first model, 3 of the second");
    // The same search again: no model call, the same outcome, every score from the cache.
    let again = cascade.run(&run, &candidates(&PASSAGES), |_, _| {}).await.unwrap();
    assert_eq!((small.calls().len(), large.calls().len()), (1, 1));
    assert_eq!((again[0].cached, again[1].cached), (6, 3));
    assert_eq!(again[1].kept, first[1].kept);
    assert_eq!(
        (again[0].queue_time, again[0].compute_time),
        (Duration::ZERO, Duration::ZERO),
        "a stage the model did not run took no model time"
    );
    // An upserted passage ("e" now reads "e v2") is a new pair: only it goes to the models.
    let changed = candidates(&["a", "b", "c", "d", "e v2", "f"]);
    let third = cascade.run(&run, &changed, |_, _| {}).await.unwrap();
    assert_eq!(small.calls()[1].1, ["e v2"]);
    assert_eq!(large.calls()[1].1, ["e v2"]);
    // Stage 1 now keeps "e v2" (9.0), d, b; stage 2 scores "e v2" 0.0 and keeps d and b.
    assert_eq!(third[1].kept, [(3, 4.0), (1, 1.0)]);
    // Another query, or the windowed form, is another pair.
    let other = Run { query: "other", ..run };
    let _ = cascade.run(&other, &candidates(&PASSAGES[..2]), |_, _| {}).await;
    assert_eq!(small.calls()[2].1, ["a", "b"]);
    // Hits: 9 on the repeat, 5 + 2 after the upsert. Misses: 9 at first, 1 + 1 after the
    // upsert, 2 + 2 for the other query (its second stage fails: "a" is not in the table).
    assert_eq!(cache.counts(), (9 + 5 + 2, 9 + 2 + 4), "hits and misses, lookup by lookup");
    // A cache of 0 bytes keeps nothing.
    let off = ScoreCache::new(0);
    let run = Run { cache: Some(&off), ..run };
    cascade.run(&run, &candidates(&PASSAGES), |_, _| {}).await.unwrap();
    cascade.run(&run, &candidates(&PASSAGES), |_, _| {}).await.unwrap();
    assert_eq!((off.len(), small.calls().len()), (0, 5));
}

#[test]
fn the_score_cache_forgets_the_least_recently_used_pairs_past_its_size() {
    let cache = ScoreCache::new(3 * ENTRY_BYTES);
    let key = |p: &str| ScoreCache::key("m", false, "q", p);
    cache.put([(key("a"), 1.0), (key("b"), 2.0), (key("c"), 3.0)]);
    assert_eq!(cache.get(&[key("a")]), [Some(1.0)]);
    cache.put([(key("d"), 4.0)]);
    assert_eq!(
        cache.get(&[key("a"), key("b"), key("c"), key("d")]),
        [Some(1.0), None, Some(3.0), Some(4.0)]
    );
    assert_ne!(ScoreCache::key("m", false, "q", "p"), ScoreCache::key("m", true, "q", "p"));
    assert_ne!(ScoreCache::key("m", false, "qp", ""), ScoreCache::key("m", false, "q", "p"));
}
