//! `tongban platform conformance`: the conformance kit against a province's platform,
//! with no federation running. Prints the report (text, or JSON with `--json`) and
//! exits 0 when every check passed (skipped ones allowed), 1 when one failed, 2 when
//! the kit's own settings are wrong (a file that cannot be read, a bad option).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use serde::Deserialize;
use tongban_node::config::PlatformConfig;
use tongban_node::platform::{
    conformance::{self, Options},
    contract::status::StatusCodes,
    http::config::{HttpPlatformConfig, PlatformAuth, PlatformTls},
};
use tongban_runtime::process::config;

/// `tongban platform conformance` options: how the node would reach the platform.
#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// The contract's base URL (`https://platform.example.gov.cn:7400`).
    #[arg(long, required_unless_present = "node_config")]
    url: Option<String>,
    /// PEM file of the CA that signs the platform's certificate.
    #[arg(long, required_unless_present = "node_config")]
    ca: Option<PathBuf>,
    /// The node's client certificate (PEM), for a platform that wants mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The name to check in the platform's certificate, when not the URL's host.
    #[arg(long)]
    server_name: Option<String>,
    /// A file holding the bearer token the platform issued to the node.
    #[arg(long, conflicts_with_all = ["hmac_app_key", "hmac_secret_file"])]
    bearer_token_file: Option<PathBuf>,
    /// The app key for HMAC request signatures.
    #[arg(long, requires = "hmac_secret_file")]
    hmac_app_key: Option<String>,
    /// A file holding the HMAC secret.
    #[arg(long, requires = "hmac_app_key")]
    hmac_secret_file: Option<PathBuf>,
    /// The province's status codes: a TOML file of lines `"已受理" = "accepted"`.
    /// Default: the reference platform's codes.
    #[arg(long, conflicts_with = "node_config")]
    status_codes: Option<PathBuf>,
    /// The node's config file: the platform is checked exactly as that node reaches
    /// it — its `[platform]` of kind "http" gives the URL, TLS files, authentication
    /// and status codes, and its region is the platform's.
    #[arg(long, conflicts_with_all = [
        "url", "ca", "cert", "key", "server_name", "bearer_token_file", "hmac_app_key",
        "hmac_secret_file", "status_codes",
    ])]
    node_config: Option<PathBuf>,
    /// Longest wait for one answer ("5s", "800ms"): slower fails, over half is slow.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The region the test cases are filed at (6-digit code).
    #[arg(long, default_value = conformance::options::DEFAULT_ORIGIN)]
    origin_region: String,
    /// The platform's own region (6-digit code), the test cases' target. Default: the
    /// issuing region of --expect-revoked, else the origin.
    #[arg(long)]
    platform_region: Option<String>,
    /// A license id revoked at the platform before the run: it must be in the
    /// revocation feed and read as revoked.
    #[arg(long)]
    expect_revoked: Option<String>,
    /// The ID number of a person in the platform's register (masked in the report).
    #[arg(long)]
    known_person: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The part of a node's config file the kit reads.
#[derive(Deserialize)]
struct NodeFile {
    region: String,
    platform: PlatformConfig,
}

/// The node's `[platform]`, its files resolved against the config's folder as the node
/// resolves them, and its region.
fn node_platform(path: &Path) -> anyhow::Result<(HttpPlatformConfig, String)> {
    let node: NodeFile = config::load(path)?;
    let PlatformConfig::Http(mut platform) = node.platform else {
        anyhow::bail!(
            "--node-config {}: its [platform] is not of kind \"http\": an embedded platform \
             has no contract to check",
            path.display()
        );
    };
    let dir = std::path::absolute(path)?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    for file in platform.file_paths() {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
    Ok((platform, node.region))
}

fn status_codes(path: &Option<PathBuf>) -> anyhow::Result<StatusCodes> {
    let Some(path) = path else {
        return Ok(StatusCodes::reference());
    };
    let codes: StatusCodes = config::load(path)?;
    if codes.is_empty() {
        anyhow::bail!("--status-codes {}: the table is empty", path.display());
    }
    Ok(codes)
}

/// How the node reaches the platform, from the flags.
fn from_flags(args: &ConformanceArgs) -> anyhow::Result<HttpPlatformConfig> {
    let (Some(url), Some(ca)) = (&args.url, &args.ca) else {
        anyhow::bail!("name the platform: --url and --ca, or --node-config");
    };
    let tls = PlatformTls {
        ca: ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        server_name: args.server_name.clone(),
    };
    let auth = match (
        &args.bearer_token_file,
        &args.hmac_app_key,
        &args.hmac_secret_file,
    ) {
        (Some(token_file), _, _) => PlatformAuth::Bearer {
            token_file: token_file.clone(),
        },
        (None, Some(app_key), Some(secret_file)) => PlatformAuth::Hmac {
            app_key: app_key.clone(),
            secret_file: secret_file.clone(),
        },
        _ => PlatformAuth::None,
    };
    Ok(HttpPlatformConfig {
        auth,
        status_codes: status_codes(&args.status_codes)?,
        ..HttpPlatformConfig::new(url.clone(), tls)
    })
}

fn options(args: &ConformanceArgs) -> anyhow::Result<Options> {
    if args.timeout.is_zero() {
        anyhow::bail!("--timeout must be more than zero");
    }
    let (platform, region) = match &args.node_config {
        Some(path) => {
            let (platform, region) = node_platform(path)?;
            (platform, Some(region))
        }
        None => (from_flags(args)?, None),
    };
    Ok(Options {
        auth: platform.auth,
        status_codes: platform.status_codes,
        timeout: args.timeout,
        origin_region: args.origin_region.clone(),
        platform_region: args.platform_region.clone().or(region),
        expect_revoked: args.expect_revoked.clone(),
        known_person: args.known_person.clone(),
        ..Options::new(platform.url, platform.tls)
    })
}

/// Exit code when the kit's own settings are wrong (as clap's for a usage error).
const SETUP_ERROR: i32 = 2;

/// Runs the kit and exits: 0 all passed, 1 a check failed, 2 a settings error.
pub async fn run(args: ConformanceArgs) -> anyhow::Result<()> {
    let options = match options(&args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(SETUP_ERROR);
        }
    };
    let report = match conformance::run(&options).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(SETUP_ERROR);
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render_text());
    }
    std::process::exit(if report.all_passed() { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tongban_node::platform::contract::status::CanonicalStatus;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConformanceArgs,
    }

    fn parse(extra: &[&str]) -> Result<ConformanceArgs, clap::Error> {
        let base = [
            "tongban",
            "--url",
            "https://p.example:7400",
            "--ca",
            "ca.pem",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.args)
    }

    fn scratch(name: &str, text: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tongban-conformance-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn options_follow_the_flags() {
        let args = parse(&[
            "--hmac-app-key",
            "node-44",
            "--hmac-secret-file",
            "s",
            "--timeout",
            "800ms",
        ])
        .unwrap();
        let options = options(&args).unwrap();
        assert!(
            matches!(options.auth, PlatformAuth::Hmac { ref app_key, .. } if app_key == "node-44")
        );
        assert_eq!(options.timeout, Duration::from_millis(800));
        assert_eq!(options.status_codes, StatusCodes::reference());
        assert_eq!(options.origin_region, "110000");

        for bad in [
            &[
                "--bearer-token-file",
                "t",
                "--hmac-app-key",
                "k",
                "--hmac-secret-file",
                "s",
            ][..],
            &["--hmac-app-key", "k"],
            &["--cert", "c.pem"],
            &["--timeout", "soon"],
            &["--status-codes", "a.toml", "--node-config", "n.toml"],
            &["--node-config", "n.toml"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_codes_come_from_a_table_or_a_node_config() {
        let table = scratch(
            "codes.toml",
            "\"受理\" = \"accepted\"\n\"收件\" = \"received\"\n",
        );
        let args = parse(&["--status-codes", table.to_str().unwrap()]).unwrap();
        let codes = options(&args).unwrap().status_codes;
        assert_eq!(codes.canonical("受理"), Ok(CanonicalStatus::Accepted));
        assert!(codes.canonical("已受理").is_err());

        let node = scratch(
            "node.toml",
            "region = \"440000\"\n[platform]\nkind = \"http\"\nurl = \"https://p:7400\"\n\
             [platform.tls]\nca = \"pki/ca.pem\"\n\
             [platform.auth]\nkind = \"bearer\"\ntoken_file = \"token\"\n\
             [platform.status_codes]\n\"办结\" = \"approved\"\n",
        );
        let cli = Cli::try_parse_from(["tongban", "--node-config", node.to_str().unwrap()])
            .unwrap()
            .args;
        let read = options(&cli).unwrap();
        assert_eq!(
            read.status_codes.canonical("办结"),
            Ok(CanonicalStatus::Approved)
        );
        assert_eq!(read.url, "https://p:7400");
        assert_eq!(read.platform_region.as_deref(), Some("440000"));
        assert_eq!(read.tls.ca, node.parent().unwrap().join("pki/ca.pem"));
        assert!(matches!(
            read.auth,
            PlatformAuth::Bearer { ref token_file } if token_file == &node.parent().unwrap().join("token")
        ));
        assert!(
            parse(&["--node-config", node.to_str().unwrap()]).is_err(),
            "not with --url"
        );

        let embedded = scratch(
            "embedded.toml",
            "region = \"440000\"\n[platform]\nkind = \"embedded\"\ndatabase = \"p.db\"\n",
        );
        let cli = Cli::try_parse_from(["tongban", "--node-config", embedded.to_str().unwrap()])
            .unwrap()
            .args;
        let error = options(&cli).unwrap_err().to_string();
        assert!(error.contains("not of kind"), "{error}");
        let wrong = scratch("wrong.toml", "\"办结\" = \"done\"\n");
        let args = parse(&["--status-codes", wrong.to_str().unwrap()]).unwrap();
        assert!(options(&args).is_err());
    }
}
