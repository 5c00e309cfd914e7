//! App downloads (Apple App Store Connect, Google Play) and app engagement (Matomo): where the
//! rows from [`crate::sources`] are kept (`state_dir/apps.db`, [`db`]), how they add up over a
//! range ([`downloads`], [`engagement`]), the pollers that fetch them on a schedule
//! ([`poll`]) and the hand import ([`import`]).
//!
//! Invariants: a report re-imported or re-fetched replaces its earlier copy (nothing
//! doubles); a Matomo day fetched after it was over is never fetched again.

pub mod db;
pub mod downloads;
pub mod engagement;
pub mod import;
pub mod poll;

pub use db::{APPS_DB_FILE, AppsDb, AppsDbError};
pub use engagement::EngagementSource;

#[cfg(test)]
mod tests;
