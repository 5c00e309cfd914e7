//! Stand-in for [`crate::apps`] in a collector built without the `apps` feature: the types
//! the API's services name exist but have no values, so the apps database and the Matomo
//! source are always `None` and the `apps/…` routes answer 404.

/// No apps database without the `apps` feature (no value of this type exists).
#[derive(Debug)]
pub enum AppsDb {}

/// No Matomo source without the `apps` feature (no value of this type exists).
#[derive(Debug)]
pub enum EngagementSource {}
