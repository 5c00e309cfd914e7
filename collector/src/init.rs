//! `earshot-collector init` and `enroll-agent`: the files a new deployment needs, made so that
//! the collector and a first agent run as they are.
//!
//! What must stay true: secrets (keys, tokens, the identity secret) are created 0600 and never
//! overwritten without `--force`; the collector's config holds only hashes of tokens; an
//! operator's existing collector.toml is never rewritten (enrolment prints what to add).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::config::{ANY_TENANT, CollectorConfig, ConfigError, Sha256Digest};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{} already exist (use --force to overwrite)", list_paths(.0))]
    Exists(Vec<PathBuf>),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(path: &Path, e: impl ToString) -> InitError {
    InitError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A new random secret: 32 bytes from the OS, as 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What `earshot-collector init` is asked for.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub quic_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub agent: String,
    /// Agents to make: the first is `agent` (config `agent.toml`); more are `agent-2`, … with
    /// `agent-2.toml`, …, each with its own token and state directory.
    pub agents: u32,
    pub force: bool,
}

/// What `init` made.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub dir: PathBuf,
    pub collector_config: PathBuf,
    pub agent_config: PathBuf,
    pub admin_token: PathBuf,
    pub fingerprint: String,
    pub http_listen: SocketAddr,
}

impl Deployment {
    /// The commands to run next, for the operator.
    pub fn next_steps(&self) -> String {
        let http = match self.http_listen {
            a if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
            a => a.to_string(),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Made a collector and one agent in {}.",
            self.dir.display()
        );
        let _ = writeln!(out, "The collector's certificate is {}.", self.fingerprint);
        let _ = writeln!(out);
        let _ = writeln!(out, "Start the collector:");
        let _ = writeln!(
            out,
            "  earshot-collector run --config {}",
            shell_quote(&self.collector_config)
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "List HAProxy log files under [inputs] files in {}, then start the agent:",
            self.agent_config.display()
        );
        let _ = writeln!(
            out,
            "  earshot-agent run --config {}",
            shell_quote(&self.agent_config)
        );
        let _ = writeln!(out, "or ship log files once:");
        let _ = writeln!(
            out,
            "  earshot-agent ingest --config {} /var/log/haproxy.log",
            shell_quote(&self.agent_config)
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Ask the API (TENANT is a backend name without its be_ prefix):"
        );
        let _ = writeln!(
            out,
            "  curl -H \"Authorization: Bearer $(cat {})\" \\\n    'http://{http}/api/v1/tenants/TENANT/streaming/summary?from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z'",
            shell_quote(&self.admin_token)
        );
        out
    }
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A TOML string literal (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

/// Makes the files of a new deployment in `options.dir`. Refuses (before writing anything)
/// when one of them exists, unless `force`.
pub fn init(options: &InitOptions) -> Result<Deployment, InitError> {
    check_agent_name(&options.agent)?;
    let created = !options.dir.exists();
    std::fs::create_dir_all(&options.dir).map_err(|e| io_err(&options.dir, e))?;
    if created {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&options.dir, std::fs::Permissions::from_mode(0o700));
    }
    let dir = options
        .dir
        .canonicalize()
        .map_err(|e| io_err(&options.dir, e))?;
    let path = |name: &str| dir.join(name);
    let (collector_toml, cert, key) = (
        path("collector.toml"),
        path("collector.crt"),
        path("collector.key"),
    );
    let mut agents = vec![(
        options.agent.clone(),
        "agent.toml".to_string(),
        "agent-state".to_string(),
    )];
    for i in 2..=options.agents.max(1) {
        agents.push((
            format!("agent-{i}"),
            format!("agent-{i}.toml"),
            format!("agent-{i}-state"),
        ));
    }
    for (name, _, _) in &agents[1..] {
        if *name == options.agent {
            return Err(InitError::Invalid(format!(
                "agent name {name:?} is also an extra agent's name"
            )));
        }
    }
    let (identity, admin_token) = (path("identity.secret"), path("admin.token"));
    let mut all = vec![
        collector_toml.clone(),
        cert.clone(),
        key.clone(),
        identity.clone(),
        admin_token.clone(),
    ];
    for (name, config, _) in &agents {
        all.push(path(&format!("{name}.token")));
        all.push(path(config));
    }
    if !options.force {
        let existing: Vec<PathBuf> = all
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.to_path_buf())
            .collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }

    let certificate = tls::self_signed(&tls::default_names(options.quic_listen))?;
    let fingerprint = certificate.fingerprint();
    let admin_secret = new_secret();
    let agent_secrets: Vec<String> = agents.iter().map(|_| new_secret()).collect();
    let force = options.force;
    tls::write_cert_and_key(&certificate, &cert, &key, force)?;
    for ((name, _, _), secret) in agents.iter().zip(&agent_secrets) {
        tls::write_private(
            &path(&format!("{name}.token")),
            format!("{secret}\n").as_bytes(),
            force,
        )?;
    }
    tls::write_private(&admin_token, format!("{admin_secret}\n").as_bytes(), force)?;
    tls::write_private(&identity, format!("{}\n", new_secret()).as_bytes(), force)?;

    let collector_text = format!(
        "# earshot collector, made by `earshot-collector init`. Every key is described in the\n\
         # collector.toml example shipped with the package.\n\
         state_dir = {state_dir}\n\
         retention_days = 400\n\
         \n\
         [quic]\n\
         listen = {quic}\n\
         cert_file = {cert}\n\
         key_file = {key}\n\
         \n\
         [http]\n\
         listen = {http}\n\
         max_range_days = 400\n\
         \n\
         {agent_block}\
         \n\
         [[api_tokens]]\n\
         name = \"admin\"\n\
         # SHA-256 of the token in {admin_path}\n\
         token_sha256 = \"{admin_hash}\"\n\
         tenants = [\"*\"]\n",
        state_dir = toml_path(&path("collector-state")),
        quic = toml_str(&options.quic_listen.to_string()),
        cert = toml_path(&cert),
        key = toml_path(&key),
        http = toml_str(&options.http_listen.to_string()),
        agent_block = agents
            .iter()
            .zip(&agent_secrets)
            .map(|((name, _, _), secret)| agents_block(name, secret, &[ANY_TENANT.to_string()]))
            .collect::<Vec<_>>()
            .join("\n"),
        admin_path = admin_token.display(),
        admin_hash = Sha256Digest::of(admin_secret.as_bytes()),
    );
    // What init writes, the collector must accept.
    CollectorConfig::parse(&collector_text, &collector_toml)?;
    tls::write_file(&collector_toml, collector_text.as_bytes(), 0o640, force)?;

    for (name, config, state) in &agents {
        let agent_text = format!(
            "# earshot agent, made by `earshot-collector init`. Keys not written here take their\n\
             # defaults (see the agent.toml example shipped with the package).\n\
             state_dir = {state_dir}\n\
             secret_file = {identity}\n\
             \n\
             [inputs]\n\
             # HAProxy log files to follow, e.g. [\"/var/log/haproxy.log\"]\n\
             files = []\n\
             \n\
             {collector_block}",
            state_dir = toml_path(&path(state)),
            identity = toml_path(&identity),
            collector_block = collector_block(
                &agent_address(options.quic_listen),
                Some("localhost"),
                &fingerprint,
                name,
                &path(&format!("{name}.token")),
            ),
        );
        tls::write_file(&path(config), agent_text.as_bytes(), 0o640, force)?;
    }
    let agent_toml = path("agent.toml");

    Ok(Deployment {
        dir,
        collector_config: collector_toml,
        agent_config: agent_toml,
        admin_token,
        fingerprint,
        http_listen: options.http_listen,
    })
}

/// Where an agent on this host reaches a collector listening on `listen`.
fn agent_address(listen: SocketAddr) -> String {
    match listen {
        a if a.ip().is_unspecified() && a.is_ipv4() => format!("127.0.0.1:{}", a.port()),
        a if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        a => a.to_string(),
    }
}

/// The `[[agents]]` table admitting `id` with `token`.
fn agents_block(id: &str, token: &str, tenants: &[String]) -> String {
    let tenants: Vec<String> = tenants.iter().map(|t| toml_str(t)).collect();
    format!(
        "[[agents]]\nid = {}\ntoken_sha256 = \"{}\"\ntenants = [{}]\n",
        toml_str(id),
        Sha256Digest::of(token.as_bytes()),
        tenants.join(", ")
    )
}

/// The agent's `[collector]` table.
fn collector_block(
    address: &str,
    server_name: Option<&str>,
    fingerprint: &str,
    id: &str,
    token_file: &Path,
) -> String {
    let mut out = String::from("[collector]\n");
    let _ = writeln!(out, "address = {}", toml_str(address));
    if let Some(name) = server_name {
        let _ = writeln!(out, "server_name = {}", toml_str(name));
    }
    let _ = writeln!(out, "fingerprint = {}", toml_str(fingerprint));
    let _ = writeln!(out, "agent_id = {}", toml_str(id));
    let _ = writeln!(out, "token_file = {}", toml_path(token_file));
    out
}

fn check_agent_name(name: &str) -> Result<(), InitError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(InitError::Invalid(format!(
            "agent name {name:?}: expected letters, digits, '-', '_' or '.' (it names the token file)"
        )));
    }
    Ok(())
}

/// What `enroll-agent` made: a token and the two config blocks that use it.
#[derive(Clone, Debug)]
pub struct Enrollment {
    pub token: String,
    /// For the agent's agent.toml.
    pub agent_block: String,
    /// To add to collector.toml.
    pub collector_block: String,
}

/// Makes a token for a new agent `name` of the collector configured at `config_path`. When
/// `token_file` is given the token is written there (0600, never over an existing file);
/// the operator's collector.toml is not touched.
pub fn enroll_agent(
    config_path: &Path,
    name: &str,
    tenants: &[String],
    token_file: Option<&Path>,
) -> Result<Enrollment, InitError> {
    check_agent_name(name)?;
    let config = CollectorConfig::load(config_path)?;
    if config.agent(name).is_some() {
        return Err(InitError::Invalid(format!(
            "agent {name:?} is already in {} (remove its [[agents]] table first to give it a new token)",
            config_path.display()
        )));
    }
    let tenants: Vec<String> = if tenants.is_empty() {
        vec![ANY_TENANT.to_string()]
    } else {
        tenants.to_vec()
    };
    if let Some(t) = tenants.iter().find(|t| t.trim().is_empty()) {
        return Err(InitError::Invalid(format!(
            "tenant {t:?}: expected a tenant name or \"*\""
        )));
    }
    let fingerprint = tls::fingerprint_of_file(&config.quic.cert_file)?;
    let token = new_secret();
    let default_token_path = PathBuf::from(format!("/etc/earshot/{name}.token"));
    let token_path = token_file.unwrap_or(&default_token_path);
    if let Some(path) = token_file {
        tls::write_private(path, format!("{token}\n").as_bytes(), false)?;
    }
    let address = match config.quic.listen {
        a if a.ip().is_unspecified() => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            format!(
                "{}:{}",
                if host.is_empty() {
                    "COLLECTOR-HOST"
                } else {
                    host
                },
                a.port()
            )
        }
        a => a.to_string(),
    };
    Ok(Enrollment {
        agent_block: collector_block(&address, None, &fingerprint, name, token_path),
        collector_block: agents_block(name, &token, &tenants),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_path_buf(),
            quic_listen: "127.0.0.1:4433".parse().unwrap(),
            http_listen: "127.0.0.1:8080".parse().unwrap(),
            agent: "agent-1".into(),
            agents: 1,
            force: false,
        }
    }

    #[test]
    fn init_makes_a_consistent_deployment() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("earshot");
        let made = init(&options(&dir)).unwrap();
        let config = CollectorConfig::load(&made.collector_config).unwrap();
        let token = std::fs::read_to_string(dir.join("agent-1.token")).unwrap();
        assert_eq!(
            config.agents[0].token_sha256,
            Sha256Digest::of(token.trim().as_bytes())
        );
        let admin = std::fs::read_to_string(&made.admin_token).unwrap();
        assert_eq!(
            config.api_tokens[0].token_sha256,
            Sha256Digest::of(admin.trim().as_bytes())
        );
        assert_eq!(
            tls::fingerprint_of_file(&config.quic.cert_file).unwrap(),
            made.fingerprint
        );
        for secret in [
            "agent-1.token",
            "admin.token",
            "identity.secret",
            "collector.key",
        ] {
            let mode = std::fs::metadata(dir.join(secret))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("identity.secret"))
                .unwrap()
                .trim()
                .len(),
            64
        );

        // The agent's [collector] block (the e2e tests run the real agent on these files).
        let agent: toml::Table =
            toml::from_str(&std::fs::read_to_string(&made.agent_config).unwrap()).unwrap();
        let link = &agent["collector"];
        assert_eq!(
            link["fingerprint"].as_str(),
            Some(made.fingerprint.as_str())
        );
        assert_eq!(link["address"].as_str(), Some("127.0.0.1:4433"));
        let token_file = link["token_file"].as_str().unwrap();
        assert_eq!(std::fs::read_to_string(token_file).unwrap(), token);
        assert!(made.next_steps().contains("earshot-collector run --config"));
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        init(&options(tmp.path())).unwrap();
        let before = std::fs::read(tmp.path().join("admin.token")).unwrap();
        let err = init(&options(tmp.path())).unwrap_err().to_string();
        assert!(
            err.contains("collector.toml") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(tmp.path().join("admin.token")).unwrap(),
            before
        );
        init(&InitOptions {
            force: true,
            ..options(tmp.path())
        })
        .unwrap();
        assert_ne!(
            std::fs::read(tmp.path().join("admin.token")).unwrap(),
            before
        );
    }

    #[test]
    fn enroll_prints_blocks_that_both_sides_accept() {
        let tmp = tempfile::tempdir().unwrap();
        let made = init(&options(tmp.path())).unwrap();
        let token_file = tmp.path().join("agent-2.token");
        let tenants = vec!["radio1".to_string(), "radio2".to_string()];
        let e = enroll_agent(
            &made.collector_config,
            "agent-2",
            &tenants,
            Some(&token_file),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&token_file).unwrap().trim(),
            e.token
        );

        let mut text = std::fs::read_to_string(&made.collector_config).unwrap();
        text.push('\n');
        text.push_str(&e.collector_block);
        let config = CollectorConfig::parse(&text, Path::new("collector.toml")).unwrap();
        let agent = config.agent("agent-2").unwrap();
        assert_eq!(agent.tenants, tenants);
        assert_eq!(agent.token_sha256, Sha256Digest::of(e.token.as_bytes()));

        let table: toml::Table = toml::from_str(&e.agent_block).unwrap();
        let link = &table["collector"];
        assert_eq!(
            link["fingerprint"].as_str(),
            Some(made.fingerprint.as_str())
        );
        assert_eq!(link["token_file"].as_str(), token_file.to_str());

        let err = enroll_agent(&made.collector_config, "agent-1", &[], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already"), "{err}");
    }
}
