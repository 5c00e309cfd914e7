//! `[classify]`: what tells a listener's client, device, OS and country — the User-Agent
//! rules (built in, plus OPAWG's files) and a MaxMind-format country database — opened once
//! and handed to the `Ingestor`, which opens no file itself.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::useragent::UaClassifier;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Directory with OPAWG user-agents-v2 JSON files (apps.json, bots.json, …) to use on
    /// top of the built-in User-Agent rules.
    pub opawg_dir: Option<PathBuf>,
    /// MaxMind-format country database (GeoLite2-Country or DB-IP Lite `.mmdb`). Without
    /// one every country is "unknown".
    pub geoip_db: Option<PathBuf>,
}

/// A key of `[classify]` that cannot be used, and why.
#[derive(Debug)]
pub struct ClassifyError {
    pub key: &'static str,
    pub message: String,
}

impl ClassifyConfig {
    /// What serde cannot check: the paths are there.
    pub fn validate(&self) -> Result<(), ClassifyError> {
        if let Some(dir) = &self.opawg_dir
            && !dir.is_dir()
        {
            return Err(ClassifyError {
                key: "opawg_dir",
                message: format!("{} is not a directory", dir.display()),
            });
        }
        if let Some(db) = &self.geoip_db
            && !db.is_file()
        {
            return Err(ClassifyError {
                key: "geoip_db",
                message: format!("{} does not exist", db.display()),
            });
        }
        Ok(())
    }

    /// Reads the OPAWG files and opens the country database.
    pub fn open(&self) -> Result<Classify, ClassifyError> {
        let user_agents = match &self.opawg_dir {
            Some(dir) => UaClassifier::with_opawg(dir).map_err(|e| ClassifyError {
                key: "opawg_dir",
                message: e.to_string(),
            })?,
            None => UaClassifier::builtin(),
        };
        let countries = match &self.geoip_db {
            Some(path) => {
                Some(
                    maxminddb::Reader::open_readfile(path).map_err(|e| ClassifyError {
                        key: "geoip_db",
                        message: format!("{}: {e}", path.display()),
                    })?,
                )
            }
            None => None,
        };
        Ok(Classify {
            user_agents,
            countries,
        })
    }
}

/// The opened `[classify]`.
pub struct Classify {
    pub user_agents: UaClassifier,
    countries: Option<maxminddb::Reader<Vec<u8>>>,
}

impl Classify {
    /// The built-in User-Agent rules and no country database.
    pub fn builtin() -> Classify {
        Classify {
            user_agents: UaClassifier::builtin(),
            countries: None,
        }
    }

    /// The ISO 3166 code of the country `ip` is in, when the database says.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let reader = self.countries.as_ref()?;
        let country: maxminddb::geoip2::Country = reader.lookup(ip).ok()?;
        country.country?.iso_code.map(str::to_string)
    }
}
