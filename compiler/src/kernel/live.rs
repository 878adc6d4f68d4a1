//! Live bytes per schedule step, under range updates: what fusion asks after every candidate
//! merge ("does the peak rise?") in `O(log steps)` instead of re-scheduling the whole graph.
//!
//! A segment tree whose node holds the maximum over its range plus a pending addition for the
//! whole range (never pushed down: a node's value is the max of its children plus its own
//! addition).

pub struct LiveBytes {
    steps: usize,
    max: Vec<i128>,
    add: Vec<i128>,
}

impl LiveBytes {
    /// Zero bytes live at each of `steps` steps.
    pub fn new(steps: usize) -> LiveBytes {
        let size = 4 * steps.max(1);
        LiveBytes { steps, max: vec![0; size], add: vec![0; size] }
    }

    /// Adds `bytes` (negative to remove) at every step of `first..=last`.
    pub fn add(&mut self, first: usize, last: usize, bytes: i128) {
        debug_assert!(first <= last && last < self.steps, "steps {first}..={last} of {}", self.steps);
        if bytes != 0 && first <= last && last < self.steps {
            self.update(1, 0, self.steps - 1, first, last, bytes);
        }
    }

    /// The most bytes live at any step.
    pub fn peak(&self) -> i128 {
        self.max[1]
    }

    fn update(&mut self, node: usize, lo: usize, hi: usize, first: usize, last: usize, bytes: i128) {
        if first <= lo && hi <= last {
            self.max[node] += bytes;
            self.add[node] += bytes;
            return;
        }
        let mid = lo + (hi - lo) / 2;
        if first <= mid {
            self.update(2 * node, lo, mid, first, last, bytes);
        }
        if last > mid {
            self.update(2 * node + 1, mid + 1, hi, first, last, bytes);
        }
        self.max[node] = self.max[2 * node].max(self.max[2 * node + 1]) + self.add[node];
    }
}

#[cfg(test)]
mod tests {
    use super::LiveBytes;

    /// Against a plain array on a fixed pseudo-random sequence of updates.
    #[test]
    fn agrees_with_an_array() {
        let steps = 37;
        let (mut tree, mut plain) = (LiveBytes::new(steps), vec![0i128; steps]);
        let mut x: u64 = 12345;
        for _ in 0..2000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (a, b) = ((x >> 33) as usize % steps, (x >> 13) as usize % steps);
            let bytes = (x >> 50) as i128 - 8000;
            tree.add(a.min(b), a.max(b), bytes);
            plain[a.min(b)..=a.max(b)].iter_mut().for_each(|v| *v += bytes);
            assert_eq!(tree.peak(), *plain.iter().max().expect("steps > 0"));
        }
    }
}
