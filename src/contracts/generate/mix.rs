//! The random source of the generators.

/// SplitMix64: tiny, fast, and stable forever.
#[derive(Debug, Clone)]
pub struct Mix(u64);

impl Mix {
    pub fn new(seed: u64) -> Mix {
        Mix(seed)
    }
    /// A generator for item `n` of stream `stream` under `seed`, independent of any other.
    pub fn for_item(seed: u64, stream: u64, n: u64) -> Mix {
        let mut m = Mix(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        m.0 ^= m.next_u64() ^ n.wrapping_mul(0x9FB2_1C65_1E98_DF25);
        m
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Skewed index in [0, n): small indices are much likelier (power law).
    pub fn skewed(&mut self, n: u64, power: f64) -> u64 {
        ((self.unit().powf(power) * n as f64) as u64).min(n - 1)
    }
    /// Picks by weight.
    /// One of `items`, by `weights`. The lists come from `expectations/domains.yaml`, which may
    /// hold more values than there are weights (each extra one gets the last weight) or fewer
    /// (the extra weights are ignored).
    pub fn weighted<'a>(&mut self, items: &'a [&'a str], weights: &[f64]) -> &'a str {
        let last = weights.last().copied().unwrap_or(1.0);
        let weight = |i: usize| weights.get(i).copied().unwrap_or(last);
        let total: f64 = (0..items.len()).map(weight).sum();
        let mut x = self.unit() * total;
        for (i, item) in items.iter().enumerate() {
            if x < weight(i) {
                return item;
            }
            x -= weight(i);
        }
        items.last().copied().unwrap_or_default()
    }
}
