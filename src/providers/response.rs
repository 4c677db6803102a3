//! Reading a provider's answer under a cap (`--prometheus-max-body`): chunk by chunk,
//! so an answer selecting far too many series is refused after at most one chunk past
//! the cap, never buffered whole. Decoding it is `answer`'s.

use std::future::Future;

// The `bytes` crate's type, as reqwest returns it (axum re-exports it).
use axum::body::Bytes;

/// Default largest response body read: a judged query returns one value (or one per
/// pod), a few hundred bytes; anything near a megabyte selects far too many series.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Why a capped read stopped.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadError<E> {
    /// The body would pass the cap.
    TooLarge,
    Read(E),
}

/// A body that arrives in chunks (`reqwest::Response`, or a test's).
pub(crate) trait Chunks: Send {
    type Error;
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send;
}

impl Chunks for reqwest::Response {
    type Error = reqwest::Error;
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send {
        self.chunk()
    }
}

/// Read `body` until its end, refusing it as soon as it would pass `cap` bytes: at
/// most `cap` bytes are kept, and no chunk is asked for after the one that passed it.
pub(crate) async fn read_capped<C: Chunks>(
    body: &mut C,
    cap: usize,
) -> Result<Vec<u8>, ReadError<C::Error>> {
    let mut out: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next_chunk().await.map_err(ReadError::Read)? {
        if out.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::providers::fake_prometheus::{FakePrometheus, Reply};
    use crate::providers::MetricError;
    use crate::providers::{MetricSource, MetricSources};
    use crate::providers::{PrometheusConfig, PrometheusSource, PrometheusSources};

    const TS: i64 = 1_800_000_000;

    /// `left` chunks of `size` bytes; counts the bytes handed out.
    struct Counted {
        left: usize,
        size: usize,
        served: usize,
    }

    impl Chunks for Counted {
        type Error = ();
        fn next_chunk(
            &mut self,
        ) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send {
            let chunk = (self.left > 0).then(|| {
                self.left -= 1;
                self.served += self.size;
                Bytes::from(vec![b'x'; self.size])
            });
            std::future::ready(Ok(chunk))
        }
    }

    async fn read_counted(
        chunks: usize,
        size: usize,
        cap: usize,
    ) -> (Result<usize, ReadError<()>>, usize) {
        let mut body = Counted {
            left: chunks,
            size,
            served: 0,
        };
        let r = read_capped(&mut body, cap).await;
        (r.map(|b| b.len()), body.served)
    }

    #[tokio::test]
    async fn an_oversized_body_stops_being_read_one_chunk_past_the_cap() {
        let (cap, chunk) = (1 << 20, 64 << 10);
        // A 64 MiB answer: refused after cap + one chunk, whatever follows.
        let (r, served) = read_counted(1024, chunk, cap).await;
        assert_eq!(r, Err(ReadError::TooLarge));
        assert!(served <= cap + chunk, "read {served} bytes of a {cap} cap");
        assert_eq!(
            served,
            cap + chunk,
            "and exactly that far: the cap is a multiple"
        );
        // Exactly at the cap is read whole.
        assert_eq!(read_counted(16, chunk, cap).await, (Ok(cap), cap));
        // One byte over is refused.
        let (r, _) = read_counted(1, cap + 1, cap).await;
        assert_eq!(r, Err(ReadError::TooLarge));
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::TimeZone::timestamp_opt(&chrono::Utc, TS, 0).unwrap()
    }

    fn source(fake: &FakePrometheus) -> PrometheusSource {
        PrometheusSource::new(&PrometheusConfig::new(
            fake.address.clone(),
            Duration::from_secs(5),
        ))
        .unwrap()
    }

    /// An instant vector of `n` one-pod samples: about 50 bytes a series.
    fn many_series(n: usize) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            vec![r#"{"metric":{"pod":"p"},"value":[1800000000,"1"]}"#; n].join(",")
        )
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_with_the_cap_in_bytes() {
        let fake = FakePrometheus::start().await;
        let huge = many_series(40_000);
        assert!(huge.len() > 1 << 20 && huge.len() < 4 << 20);
        fake.on("everything", Reply::json(200, huge.clone()));
        let e = source(&fake)
            .query_scalar("everything", at())
            .await
            .unwrap_err();
        assert_eq!(e, MetricError::TooLarge { limit: 1 << 20 });
        assert_eq!(e.category(), "too_large");
        assert_eq!(
            e.to_string(),
            "response larger than 1048576 bytes (the controller's --prometheus-max-body); \
             the query selects too many series: aggregate it, e.g. sum(...)"
        );
        // The cap is the controller's to set: with room for it, the same answer is read
        // (and refused for what it is, several series).
        let roomy = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(5))
            .with_max_body(8 << 20);
        let e = roomy
            .source(None, None)
            .unwrap()
            .query_scalar("everything", at())
            .await
            .unwrap_err();
        assert!(
            matches!(e, MetricError::MultipleSeries { count: 40_000, .. }),
            "{e}"
        );
        // A small cap refuses a small answer too: the cap is on bytes, not series.
        fake.on("one", Reply::vector(TS, &[("{}", "0.5")]));
        let tiny = source(&fake).with_max_body(16);
        assert_eq!(
            tiny.query_scalar("one", at()).await,
            Err(MetricError::TooLarge { limit: 16 })
        );
    }
}
