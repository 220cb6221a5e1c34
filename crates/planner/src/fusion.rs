//! Fusion of ranked lists into one: Reciprocal Rank Fusion, and a normalised linear blend.

use std::collections::HashMap;
use std::sync::Arc;

/// One retriever's list, best first, and its weight in the fusion.
#[derive(Clone, Debug)]
pub struct Ranking {
    /// Multiplies this list's contribution; 0 keeps the list out of the scores.
    pub weight: f64,
    /// (document id, retriever score), best first; ranks count from 1.
    pub entries: Vec<(Arc<str>, f32)>,
}

/// A document after fusion.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// Document id.
    pub id: Arc<str>,
    /// Fused score; higher is better.
    pub score: f64,
    /// Rank (from 1) in each input list, in input order; `None` where the list lacks it.
    pub ranks: Vec<Option<u32>>,
}

/// Reciprocal Rank Fusion: `score(d) = Σ_r w_r / (k + rank_r(d))`, ranks from 1, best first,
/// ties broken by id so equal inputs always give the same order.
pub fn reciprocal_rank_fusion(lists: &[Ranking], k: f64) -> Vec<Fused> {
    fuse(lists, |_, list, rank, _| list.weight / (k + f64::from(rank)))
}

/// Linear fusion: each list's scores are min-max normalised to [0, 1] (all 1 when they are
/// equal), weighted and summed; a list that lacks a document adds nothing for it.
pub fn linear_fusion(lists: &[Ranking]) -> Vec<Fused> {
    let bounds: Vec<(f64, f64)> = lists
        .iter()
        .map(|l| {
            l.entries.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| {
                (lo.min(f64::from(*s)), hi.max(f64::from(*s)))
            })
        })
        .collect();
    fuse(lists, |index, list, _, score| {
        let (lo, hi) = bounds[index];
        let normalised = if hi > lo { (f64::from(score) - lo) / (hi - lo) } else { 1.0 };
        list.weight * normalised
    })
}

/// Sums `contribution(list index, list, rank, score)` per document, best first, ties by id.
fn fuse(lists: &[Ranking], contribution: impl Fn(usize, &Ranking, u32, f32) -> f64) -> Vec<Fused> {
    let mut by_id: HashMap<Arc<str>, Fused> = HashMap::new();
    for (index, list) in lists.iter().enumerate() {
        for (position, (id, score)) in list.entries.iter().enumerate() {
            let rank = position as u32 + 1;
            let fused = by_id.entry(Arc::clone(id)).or_insert_with(|| Fused {
                id: Arc::clone(id),
                score: 0.0,
                ranks: vec![None; lists.len()],
            });
            // A list that names a document twice counts its best rank only.
            if fused.ranks[index].is_none() {
                fused.ranks[index] = Some(rank);
                fused.score += contribution(index, list, rank, *score);
            }
        }
    }
    let mut fused: Vec<Fused> = by_id.into_values().collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(weight: f64, ids: &[&str]) -> Ranking {
        Ranking {
            weight,
            entries: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (Arc::from(*id), 10.0 - i as f32))
                .collect(),
        }
    }

    #[test]
    fn rrf_matches_a_hand_computed_example() {
        // k = 10; weights 1, 2, 0.5.
        let lists = [
            ranking(1.0, &["a", "b", "c"]),
            ranking(2.0, &["b", "d"]),
            ranking(0.5, &["c", "a", "d"]),
        ];
        let fused = reciprocal_rank_fusion(&lists, 10.0);
        let got: Vec<(&str, f64, Vec<Option<u32>>)> =
            fused.iter().map(|f| (&*f.id, f.score, f.ranks.clone())).collect();
        // b: 1/12 + 2/11            = 0.265151515...
        // d: 2/12 + 0.5/13          = 0.205128205...
        // a: 1/11 + 0.5/12          = 0.132575757...
        // c: 1/13 + 0.5/11          = 0.122377622...
        let expected = [
            ("b", 1.0 / 12.0 + 2.0 / 11.0, vec![Some(2), Some(1), None]),
            ("d", 2.0 / 12.0 + 0.5 / 13.0, vec![None, Some(2), Some(3)]),
            ("a", 1.0 / 11.0 + 0.5 / 12.0, vec![Some(1), None, Some(2)]),
            ("c", 1.0 / 13.0 + 0.5 / 11.0, vec![Some(3), None, Some(1)]),
        ];
        assert_eq!(got.len(), 4);
        for ((id, score, ranks), (want_id, want_score, want_ranks)) in got.iter().zip(expected) {
            assert_eq!(*id, want_id);
            assert!((score - want_score).abs() < 1e-12, "{id}: {score} vs {want_score}");
            assert_eq!(*ranks, want_ranks);
        }
        assert!((fused[0].score - 0.265_151_515_151_515_2).abs() < 1e-15);
    }

    #[test]
    fn rrf_ties_break_by_id() {
        let lists = [ranking(1.0, &["z", "y"]), ranking(1.0, &["y", "z"])];
        let fused = reciprocal_rank_fusion(&lists, 60.0);
        assert_eq!(fused[0].score, fused[1].score);
        assert_eq!((&*fused[0].id, &*fused[1].id), ("y", "z"));
    }

    #[test]
    fn linear_fusion_normalises_each_list() {
        let bm25 = Ranking {
            weight: 1.0,
            entries: vec![(Arc::from("a"), 12.0), (Arc::from("b"), 8.0), (Arc::from("c"), 2.0)],
        };
        let dense =
            Ranking { weight: 0.5, entries: vec![(Arc::from("c"), 0.9), (Arc::from("a"), 0.5)] };
        let fused = linear_fusion(&[bm25, dense]);
        let got: Vec<(&str, f64)> = fused.iter().map(|f| (&*f.id, f.score)).collect();
        // a: 1.0 + 0.5*0 = 1.0; c: 0 + 0.5*1 = 0.5; b: 0.6.
        assert_eq!(got, vec![("a", 1.0), ("b", 0.6), ("c", 0.5)]);
    }
}
