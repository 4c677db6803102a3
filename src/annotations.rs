//! Onboarding by annotation: `serin.dev/*` keys on a Deployment become a Canary spec.
