//! Vector arithmetic for the three distances, and the flat in-memory vector table that backs
//! exact search and graph rebuilds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::config::Distance;
use crate::{PointId, Score};

/// Largest accepted magnitude of one vector component: keeps every dot product and squared
/// distance of up to 4,096 dimensions finite in f32.
pub const MAX_COMPONENT: f32 = 1e9;

impl Distance {
    /// Checks a vector sent by a client; the error says what is wrong with it.
    pub fn check(self, vector: &[f32], dimension: usize) -> Result<(), String> {
        if vector.len() != dimension {
            return Err(format!("has {} dimensions, the collection has {dimension}", vector.len()));
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(format!("component {i} is {} (must be finite)", vector[i]));
        }
        if let Some(i) = vector.iter().position(|x| x.abs() > MAX_COMPONENT) {
            return Err(format!("component {i} is {} (magnitude must be at most 1e9)", vector[i]));
        }
        if self == Distance::Cosine && vector.iter().all(|&x| x == 0.0) {
            return Err("is all zeros, which has no cosine similarity".to_string());
        }
        Ok(())
    }

    /// The form a checked vector is stored and compared in: unit length for cosine.
    pub(crate) fn prepare(self, vector: &[f32]) -> Vec<f32> {
        match self {
            Distance::Cosine => {
                let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
                vector.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
            }
            Distance::Dot | Distance::L2 => vector.to_vec(),
        }
    }

    /// Similarity of two prepared vectors; higher is closer.
    pub(crate) fn similarity(self, a: &[f32], b: &[f32]) -> Score {
        match self {
            Distance::Cosine | Distance::Dot => dot(a, b),
            Distance::L2 => -squared_l2(a, b).sqrt(),
        }
    }

    /// A non-negative distance for the HNSW graph, decreasing as similarity grows (hnsw_rs
    /// asserts distances are >= 0, so the dot product goes through a softplus).
    pub(crate) fn graph_distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine => (1.0 - dot(a, b)).max(0.0),
            Distance::L2 => squared_l2(a, b).sqrt(),
            Distance::Dot => {
                let s = f64::from(dot(a, b));
                let softplus = if s > 0.0 { (-s).exp().ln_1p() } else { -s + s.exp().ln_1p() };
                softplus as f32
            }
        }
    }
}

/// Lanes of the accumulators below: two AVX2 registers, four SSE registers.
const LANES: usize = 16;

/// Dot product; on x86-64 with AVX2 the same loop is compiled for 256-bit registers.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_lanes(a, b)
}

fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { squared_l2_avx2(a, b) };
    }
    squared_l2_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn squared_l2_avx2(a: &[f32], b: &[f32]) -> f32 {
    squared_l2_lanes(a, b)
}

/// Independent accumulators so the compiler vectorises the loop.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn squared_l2_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// All live vectors of a collection in one contiguous buffer (prepared form), by point id.
pub(crate) struct Vectors {
    dimension: usize,
    data: Vec<f32>,
    pids: Vec<PointId>,
    slots: FxHashMap<PointId, usize>,
}

impl Vectors {
    pub(crate) fn new(dimension: usize) -> Self {
        Self { dimension, data: Vec::new(), pids: Vec::new(), slots: FxHashMap::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.pids.len()
    }

    pub(crate) fn contains(&self, pid: PointId) -> bool {
        self.slots.contains_key(&pid)
    }

    pub(crate) fn get(&self, pid: PointId) -> Option<&[f32]> {
        self.slots.get(&pid).map(|&slot| self.slot(slot))
    }

    fn slot(&self, slot: usize) -> &[f32] {
        &self.data[slot * self.dimension..(slot + 1) * self.dimension]
    }

    /// Adds a prepared vector under a fresh point id.
    pub(crate) fn insert(&mut self, pid: PointId, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dimension);
        if let Some(&slot) = self.slots.get(&pid) {
            self.data[slot * self.dimension..(slot + 1) * self.dimension].copy_from_slice(vector);
            return;
        }
        self.slots.insert(pid, self.pids.len());
        self.pids.push(pid);
        self.data.extend_from_slice(vector);
    }

    /// Removes a point's vector (the last slot moves into its place); false if absent.
    pub(crate) fn remove(&mut self, pid: PointId) -> bool {
        let Some(slot) = self.slots.remove(&pid) else { return false };
        let last = self.pids.len() - 1;
        if slot != last {
            let moved = self.pids[last];
            self.data.copy_within(
                last * self.dimension..(last + 1) * self.dimension,
                slot * self.dimension,
            );
            self.pids[slot] = moved;
            self.slots.insert(moved, slot);
        }
        self.pids.pop();
        self.data.truncate(last * self.dimension);
        true
    }

    /// Every (point id, vector) pair.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PointId, &[f32])> {
        self.pids.iter().copied().zip(self.data.chunks_exact(self.dimension))
    }

    /// Exact top `k` by similarity among the points `accept` lets through; best first, ties by
    /// the external id `id_of` gives (points without one are skipped).
    pub(crate) fn exact_top_k(
        &self,
        query: &[f32],
        k: usize,
        distance: Distance,
        accept: impl Fn(PointId) -> bool,
        id_of: impl Fn(PointId) -> Option<Arc<str>>,
    ) -> Vec<(PointId, Score)> {
        let mut heap: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
        if k == 0 {
            return Vec::new();
        }
        for (pid, vector) in self.iter() {
            if !accept(pid) {
                continue;
            }
            let score = distance.similarity(query, vector);
            // Ids are looked up only for points that reach the heap: ties order by them.
            if heap.len() == k && heap.peek().is_some_and(|worst| score < worst.score) {
                continue;
            }
            let Some(id) = id_of(pid) else { continue };
            let entry = Ranked { score, id, pid };
            if heap.len() < k {
                heap.push(entry);
            } else if heap.peek().is_some_and(|worst| entry < *worst) {
                heap.pop();
                heap.push(entry);
            }
        }
        heap.into_sorted_vec().into_iter().map(|r| (r.pid, r.score)).collect()
    }
}

/// Orders best-first by score, then by external id: "less" is better, so a max-heap keeps
/// the worst on top.
struct Ranked {
    score: Score,
    id: Arc<str>,
    pid: PointId,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then_with(|| self.id.cmp(&other.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarities_match_hand_computed_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let b = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
        assert_eq!(dot(&a, &b), 165.0);
        assert_eq!(Distance::Dot.similarity(&a, &b), 165.0);
        // 40 components: two full 16-lane chunks and a tail of 8, on both code paths.
        let long_a: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let long_b: Vec<f32> = (0..40).map(|i| (40 - i) as f32).collect();
        let expected: f32 = (0..40).map(|i| (i * (40 - i)) as f32).sum();
        assert_eq!(dot(&long_a, &long_b), expected);
        assert_eq!(dot_lanes(&long_a, &long_b), expected);
        let expected_l2: f32 = (0..40).map(|i| ((2 * i - 40) * (2 * i - 40)) as f32).sum();
        assert_eq!(squared_l2(&long_a, &long_b), expected_l2);
        assert_eq!(Distance::L2.similarity(&[0.0, 0.0], &[3.0, 4.0]), -5.0);
        let (pa, pb) =
            (Distance::Cosine.prepare(&[3.0, 4.0]), Distance::Cosine.prepare(&[4.0, 3.0]));
        assert!((Distance::Cosine.similarity(&pa, &pb) - 0.96).abs() < 1e-6);
        assert!((Distance::Cosine.graph_distance(&pa, &pb) - 0.04).abs() < 1e-6);
    }

    #[test]
    fn dot_graph_distance_is_positive_and_order_preserving() {
        let q = [1.0, 0.0];
        let scores = [-50.0f32, -1.0, 0.0, 0.5, 1.0, 30.0];
        let dists: Vec<f32> =
            scores.iter().map(|&s| Distance::Dot.graph_distance(&q, &[s, 0.0])).collect();
        assert!(dists.iter().all(|&d| d >= 0.0 && d.is_finite()));
        assert!(dists.windows(2).all(|w| w[0] > w[1]), "{dists:?}");
    }

    #[test]
    fn check_rejects_bad_vectors_with_reasons() {
        assert_eq!(
            Distance::L2.check(&[1.0], 2),
            Err("has 1 dimensions, the collection has 2".into())
        );
        assert_eq!(
            Distance::L2.check(&[1.0, f32::NAN], 2),
            Err("component 1 is NaN (must be finite)".into())
        );
        assert_eq!(
            Distance::Cosine.check(&[0.0, 0.0], 2),
            Err("is all zeros, which has no cosine similarity".into())
        );
        assert!(Distance::L2.check(&[0.0, 0.0], 2).is_ok());
    }

    #[test]
    fn remove_keeps_the_table_dense() {
        let mut v = Vectors::new(2);
        v.insert(10, &[1.0, 0.0]);
        v.insert(11, &[0.0, 1.0]);
        v.insert(12, &[1.0, 1.0]);
        assert!(v.remove(10));
        assert!(!v.remove(10));
        assert_eq!(v.len(), 2);
        assert_eq!(v.get(12), Some(&[1.0, 1.0][..]));
        assert_eq!(v.get(11), Some(&[0.0, 1.0][..]));
        let id_of = |pid: PointId| Some(Arc::from(pid.to_string()));
        let top = v.exact_top_k(&[1.0, 1.0], 5, Distance::Dot, |_| true, id_of);
        assert_eq!(top, vec![(12, 2.0), (11, 1.0)]);
        let filtered = v.exact_top_k(&[1.0, 1.0], 5, Distance::Dot, |pid| pid != 12, id_of);
        assert_eq!(filtered, vec![(11, 1.0)]);
    }

    #[test]
    fn exact_ties_at_the_cut_go_to_the_smaller_external_id() {
        let mut v = Vectors::new(2);
        // Equal scores; point ids in the opposite order of the external ids.
        for (pid, _) in [(1, "d"), (2, "c"), (3, "b"), (4, "a")] {
            v.insert(pid, &[1.0, 0.0]);
        }
        let ids = |pid: PointId| Some(Arc::from(["d", "c", "b", "a"][pid as usize - 1]));
        let top = v.exact_top_k(&[1.0, 0.0], 2, Distance::Dot, |_| true, ids);
        assert_eq!(top, vec![(4, 1.0), (3, 1.0)]);
    }
}
