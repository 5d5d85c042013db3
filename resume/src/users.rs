//! Users (portal accounts) and their terminals.

use serde::Serialize;
use sharecast_formats::compat::TERMINAL_TYPES;

use crate::error::{Error, Result};
use crate::service::ResumeService;

/// A user just made.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    /// User id.
    pub(crate) user_id: String,
    /// The user's token (`su_…`), shown this once and stored hashed.
    pub(crate) user_token: String,
}

/// A terminal just added.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct NewTerminal {
    /// Terminal id.
    pub(crate) terminal_id: String,
    /// Its type, one of [`TERMINAL_TYPES`].
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

impl ResumeService {
    /// Makes a user named `name` (1 to 100 characters, trimmed).
    pub async fn create_user(&self, name: &str) -> Result<NewUser> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::BadName);
        }
        let (user_id, user_token) = self.store.create_user(name).await?;
        Ok(NewUser {
            user_id,
            user_token,
        })
    }

    /// Adds a terminal of type `kind` (one of [`TERMINAL_TYPES`]) to the
    /// user's.
    pub async fn add_terminal(
        &self,
        user_id: &str,
        kind: &str,
        name: Option<&str>,
    ) -> Result<NewTerminal> {
        if !TERMINAL_TYPES.contains(&kind) {
            return Err(Error::BadTerminalType);
        }
        let terminal_id = self.store.add_terminal(user_id, kind, name).await?;
        Ok(NewTerminal {
            terminal_id,
            kind: kind.to_string(),
        })
    }
}
