//! Seeded traffic simulation shared by the simulation test and the decision-quality
//! bench (`#[path]`-included there): a small PRNG, Poisson and binomial draws.
#![allow(dead_code)]

/// xoshiro256** (Blackman & Vigna), seeded through SplitMix64.
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Poisson(lambda): Knuth's product method on chunks of mean <= 30.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        let mut left = lambda;
        let mut total = 0;
        while left > 0.0 {
            let l = left.min(30.0);
            left -= l;
            let limit = (-l).exp();
            let mut prod = self.uniform();
            while prod > limit {
                total += 1;
                prod *= self.uniform();
            }
        }
        total
    }

    /// Binomial(n, p) by inversion on chunks of at most 1000 trials.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let mut left = n;
        let mut total = 0;
        while left > 0 {
            let k = left.min(1000);
            left -= k;
            let u = self.uniform();
            let ratio = p / (1.0 - p);
            let mut pk = (1.0 - p).powi(k as i32);
            let mut cdf = pk;
            let mut x = 0;
            while u > cdf && x < k {
                pk *= (k - x) as f64 / (x + 1) as f64 * ratio;
                x += 1;
                cdf += pk;
            }
            total += x;
        }
        total
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One interval of traffic: requests are Poisson with the given total rate, split by
/// weight (independent Poisson streams); each request fails independently.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntervalCounts {
    pub canary_requests: u64,
    pub canary_errors: u64,
    pub baseline_requests: u64,
    pub baseline_errors: u64,
}

pub fn interval_counts(
    rng: &mut Rng,
    requests_per_interval: f64,
    weight_percent: f64,
    p_baseline: f64,
    p_canary: f64,
) -> IntervalCounts {
    let w = weight_percent / 100.0;
    let canary_requests = rng.poisson(requests_per_interval * w);
    let baseline_requests = rng.poisson(requests_per_interval * (1.0 - w));
    IntervalCounts {
        canary_requests,
        canary_errors: rng.binomial(canary_requests, p_canary),
        baseline_requests,
        baseline_errors: rng.binomial(baseline_requests, p_baseline),
    }
}
