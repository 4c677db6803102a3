//! Who a Slack user is in Kubernetes. A click carries only a Slack user id; the
//! mapping (kept where tenants cannot write: a file mounted from a ConfigMap in the
//! controller's namespace) names the Kubernetes user and groups that click acts as,
//! and every decision passes the same SubjectAccessReview as that identity.
//!
//! ```yaml
//! users:
//!   - slackUserId: U024BE7LH
//!     teamId: T0001          # optional: only from this workspace
//!     username: alice@example.com
//!     groups: [release-managers]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::auth::UserInfo;

/// Groups no Slack click may carry: a mapping to them would make every button an
/// administrator's.
const FORBIDDEN_GROUPS: &[&str] = &["system:masters"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("slack identities: {0}")]
    Invalid(String),
    #[error("slack identities file {path}: {message}")]
    Read { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    slack_user_id: String,
    #[serde(default)]
    team_id: Option<String>,
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    users: Vec<Entry>,
}

/// One mapped Slack user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackIdentity {
    pub team_id: Option<String>,
    pub user: UserInfo,
}

/// Slack user id -> Kubernetes identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlackIdentities {
    by_id: BTreeMap<String, SlackIdentity>,
}

fn slack_id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl SlackIdentities {
    /// Parse and check the mapping (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let invalid = |m: String| IdentityError::Invalid(m);
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let mut by_id = BTreeMap::new();
        for e in file.users {
            if !slack_id_ok(&e.slack_user_id) {
                return Err(invalid(format!(
                    "slackUserId {:?} is not a Slack user id (letters and digits)",
                    e.slack_user_id
                )));
            }
            if let Some(t) = e.team_id.as_deref().filter(|t| !slack_id_ok(t)) {
                return Err(invalid(format!("teamId {t:?} is not a Slack team id")));
            }
            let username = e.username.trim().to_string();
            if username.is_empty() || username.len() > 256 {
                return Err(invalid(format!(
                    "{}: username must be 1 to 256 characters",
                    e.slack_user_id
                )));
            }
            if let Some(g) = e
                .groups
                .iter()
                .find(|g| FORBIDDEN_GROUPS.contains(&g.as_str()))
            {
                return Err(invalid(format!(
                    "{}: group {g} may not be mapped to a Slack user",
                    e.slack_user_id
                )));
            }
            let identity = SlackIdentity {
                team_id: e.team_id,
                user: UserInfo {
                    username,
                    uid: None,
                    groups: e.groups,
                    extra: BTreeMap::new(),
                },
            };
            if by_id.insert(e.slack_user_id.clone(), identity).is_some() {
                return Err(invalid(format!(
                    "slackUserId {} is mapped twice",
                    e.slack_user_id
                )));
            }
        }
        Ok(Self { by_id })
    }

    /// The Kubernetes identity of Slack user `user_id` clicking in workspace `team_id`.
    pub fn lookup(&self, team_id: Option<&str>, user_id: &str) -> Option<&UserInfo> {
        let id = self.by_id.get(user_id)?;
        match &id.team_id {
            Some(want) if Some(want.as_str()) != team_id => None,
            _ => Some(&id.user),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Where the mapping comes from: fixed (tests), or a file re-read when it changes (a
/// mounted ConfigMap is updated in place by the kubelet).
#[derive(Clone)]
pub struct IdentitySource {
    inner: Arc<Source>,
}

enum Source {
    Fixed(Arc<SlackIdentities>),
    File {
        path: PathBuf,
        /// Last good mapping and the modification time it was read at.
        cache: Mutex<(Option<SystemTime>, Arc<SlackIdentities>)>,
    },
}

const READ_TIMEOUT: Duration = Duration::from_secs(2);

impl IdentitySource {
    pub fn fixed(ids: SlackIdentities) -> Self {
        Self {
            inner: Arc::new(Source::Fixed(Arc::new(ids))),
        }
    }

    /// Read `path` now (so a bad file stops startup), and again whenever it changes.
    pub async fn file(path: PathBuf) -> Result<Self, IdentityError> {
        let (mtime, ids) = read(&path).await?;
        Ok(Self {
            inner: Arc::new(Source::File {
                path,
                cache: Mutex::new((mtime, Arc::new(ids))),
            }),
        })
    }

    /// The current mapping. A file that became unreadable or invalid keeps the last
    /// good mapping (and says so in the log).
    pub async fn current(&self) -> Arc<SlackIdentities> {
        let (path, cache) = match &*self.inner {
            Source::Fixed(ids) => return ids.clone(),
            Source::File { path, cache } => (path, cache),
        };
        let cached = || match cache.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let (seen, ids) = cached();
        let mtime = tokio::fs::metadata(path)
            .await
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime == seen {
            return ids;
        }
        match read(path).await {
            Ok((mtime, fresh)) => {
                let fresh = Arc::new(fresh);
                tracing::info!(users = fresh.len(), "slack identities reloaded");
                if let Ok(mut c) = cache.lock() {
                    *c = (mtime, fresh.clone());
                }
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the last good slack identities");
                ids
            }
        }
    }
}

async fn read(path: &PathBuf) -> Result<(Option<SystemTime>, SlackIdentities), IdentityError> {
    let err = |m: String| IdentityError::Read {
        path: path.display().to_string(),
        message: m,
    };
    let text = tokio::time::timeout(READ_TIMEOUT, tokio::fs::read_to_string(path))
        .await
        .map_err(|_| err("read timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
    let mtime = tokio::fs::metadata(path)
        .await
        .and_then(|m| m.modified())
        .ok();
    Ok((mtime, SlackIdentities::parse(&text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_parses_and_checks() {
        let m = SlackIdentities::parse(
            "users:\n- {slackUserId: U1, username: alice@example.com, groups: [release-managers]}\n\
             - {slackUserId: U2, teamId: T9, username: bob}\n",
        )
        .unwrap();
        let alice = m.lookup(Some("T1"), "U1").unwrap();
        assert_eq!(alice.username, "alice@example.com");
        assert_eq!(alice.groups, vec!["release-managers".to_string()]);
        // bob only from workspace T9.
        assert!(m.lookup(Some("T1"), "U2").is_none());
        assert!(m.lookup(None, "U2").is_none());
        assert_eq!(m.lookup(Some("T9"), "U2").unwrap().username, "bob");
        assert!(m.lookup(Some("T1"), "U3").is_none());
        assert!(SlackIdentities::parse("").unwrap().is_empty());
        for bad in [
            "users: [{slackUserId: 'U 1', username: a}]",
            "users: [{slackUserId: U1, username: ' '}]",
            "users: [{slackUserId: U1, username: a}, {slackUserId: U1, username: b}]",
            "users: [{slackUserId: U1, username: a, groups: [system:masters]}]",
            "users: [{slackUserId: U1, user: a}]",
            "U1=alice",
        ] {
            assert!(SlackIdentities::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn file_is_reread_when_it_changes_and_a_bad_edit_keeps_the_last_good() {
        let dir = std::env::temp_dir().join(format!("serin-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identities.yaml");
        std::fs::write(&path, "users: [{slackUserId: U1, username: alice}]").unwrap();
        let src = IdentitySource::file(path.clone()).await.unwrap();
        assert_eq!(
            src.current().await.lookup(None, "U1").unwrap().username,
            "alice"
        );
        // Writes within one mtime tick would look unchanged; step the time explicitly.
        let bump = |secs: u64| {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() + Duration::from_secs(secs))
                .unwrap();
        };
        std::fs::write(&path, "users: [{slackUserId: U1, username: carol}]").unwrap();
        bump(10);
        assert_eq!(
            src.current().await.lookup(None, "U1").unwrap().username,
            "carol"
        );
        std::fs::write(&path, "users: [{slackUserId: 'U 1'}]").unwrap();
        bump(20);
        assert_eq!(
            src.current().await.lookup(None, "U1").unwrap().username,
            "carol"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
