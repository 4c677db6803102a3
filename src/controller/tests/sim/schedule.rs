//! A schedule: everything that happens to one release, drawn up front from a seed so it
//! can be replayed exactly and shrunk event by event.

use std::fmt;

/// SplitMix64: small, seedable, good enough for drawing schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 1.0 < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Something a user, the cluster or the environment does between two reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserEvent {
    /// A new image on the user's Deployment; `good` says how it behaves.
    NewRevision {
        good: bool,
    },
    Abort,
    Approve,
    Retry,
    /// Toggle `spec.suspend`.
    TogglePause,
    /// Delete the Canary (or remove the annotation: the same for the Canary controller).
    DeleteCanary,
    DeletePrimary,
    DeletePrimaryService,
    DeleteTemplate,
    RestoreTemplate,
    PrometheusDown,
    PrometheusUp,
    /// Remove the router's CRDs (Istio schedules only).
    RouterCrdGone,
    RouterCrdBack,
    /// RBAC stops allowing one verb on Deployments (until `RbacBack`).
    RbacDenyPatchDeployments,
    RbacBack,
    /// Deployments finish rolling out (manual-rollout schedules).
    Settle,
    /// A long pause of the controller: time jumps.
    TimeJump,
}

/// A fault injected before one API request of a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The controller process dies: this and every later request of the reconcile fail.
    Crash,
    /// 409 on a write.
    Conflict,
    /// 500 from the API server.
    ServerError,
    /// The request times out (504).
    Timeout,
    /// 403 on this request.
    Forbidden,
    /// A write commits but the answer is lost (504).
    LostResponse,
    /// Another replica takes the Lease: this controller's fence closes now.
    Takeover,
    /// The primary is deleted while this request waits.
    DeletePrimaryNow,
    /// A new revision lands while this request waits.
    NewRevisionNow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Before the reconcile of `step`.
    User { step: u32, event: UserEvent },
    /// Before request `request` (0-based) of the reconcile of `step`.
    Fault {
        step: u32,
        request: u32,
        fault: Fault,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::User { step, event } => write!(f, "step {step:>2}: {event:?}"),
            Op::Fault {
                step,
                request,
                fault,
            } => write!(f, "step {step:>2}, request {request:>2}: {fault:?}"),
        }
    }
}

/// The shape of one release, drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub istio: bool,
    pub blue_green: bool,
    pub gate: bool,
    pub manual_rollouts: bool,
    /// The first release's image behaves well.
    pub first_good: bool,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub setup: Setup,
    pub steps: u32,
    pub ops: Vec<Op>,
}

/// Steps with faults; quiescence follows.
pub const STEPS: u32 = 28;
/// Fault probability per request.
const P_FAULT: f64 = 0.04;
/// User event probability per step.
const P_USER: f64 = 0.25;
/// Requests per reconcile that may get a fault.
const REQUESTS: u32 = 16;

impl Schedule {
    pub fn draw(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let setup = Setup {
            istio: rng.chance(0.4),
            blue_green: rng.chance(0.25),
            gate: rng.chance(0.3),
            manual_rollouts: rng.chance(0.5),
            first_good: rng.chance(0.6),
        };
        let mut ops = Vec::new();
        // The first release starts at once, so every schedule exercises one.
        ops.push(Op::User {
            step: 3,
            event: UserEvent::NewRevision {
                good: setup.first_good,
            },
        });
        for step in 0..STEPS {
            if rng.chance(P_USER) {
                let event = match rng.below(20) {
                    0..=2 => UserEvent::NewRevision {
                        good: rng.chance(0.6),
                    },
                    3 => UserEvent::Abort,
                    4 => UserEvent::Approve,
                    5 => UserEvent::Retry,
                    6 => UserEvent::TogglePause,
                    7 => UserEvent::DeleteCanary,
                    8 => UserEvent::DeletePrimary,
                    9 => UserEvent::DeletePrimaryService,
                    10 => UserEvent::DeleteTemplate,
                    11 => UserEvent::RestoreTemplate,
                    12 => UserEvent::PrometheusDown,
                    13 => UserEvent::PrometheusUp,
                    14 if setup.istio => UserEvent::RouterCrdGone,
                    15 if setup.istio => UserEvent::RouterCrdBack,
                    14 | 15 => UserEvent::TimeJump,
                    16 => UserEvent::RbacDenyPatchDeployments,
                    17 => UserEvent::RbacBack,
                    18 => UserEvent::Settle,
                    _ => UserEvent::TimeJump,
                };
                ops.push(Op::User { step, event });
            }
            for request in 0..REQUESTS {
                if rng.chance(P_FAULT) {
                    let fault = match rng.below(12) {
                        0 | 1 => Fault::Crash,
                        2 | 3 => Fault::Conflict,
                        4 => Fault::ServerError,
                        5 => Fault::Timeout,
                        6 => Fault::Forbidden,
                        7 | 8 => Fault::LostResponse,
                        9 => Fault::Takeover,
                        10 => Fault::DeletePrimaryNow,
                        _ => Fault::NewRevisionNow,
                    };
                    ops.push(Op::Fault {
                        step,
                        request,
                        fault,
                    });
                }
            }
        }
        Schedule {
            seed,
            setup,
            steps: STEPS,
            ops,
        }
    }

    pub fn user_events(&self, step: u32) -> impl Iterator<Item = UserEvent> + '_ {
        self.ops.iter().filter_map(move |o| match o {
            Op::User { step: s, event } if *s == step => Some(*event),
            _ => None,
        })
    }

    /// The same schedule without op `i`.
    pub fn without(&self, i: usize) -> Self {
        let mut s = self.clone();
        s.ops.remove(i);
        s
    }
}
