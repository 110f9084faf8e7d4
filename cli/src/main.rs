//! `flotilla`: the user and admin command-line tool. It speaks only the REST API.

mod admin;
mod artifacts;
mod caches;
mod client;
mod commands;
mod config;
mod dev;
mod events;
mod output;
mod repos;
mod retention;
mod secrets;
mod tls;
mod wait;

use clap::{Parser, Subcommand};
use output::Format;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Run pipelines on a Flotilla cluster and operate the cluster"
)]
pub struct Cli {
    /// API addresses of cluster nodes, comma-separated; the next is tried when one is down.
    /// Default: the saved login's (`flotilla login`), else
    /// 127.0.0.1:8101,127.0.0.1:8102,127.0.0.1:8103.
    #[arg(long, global = true, env = "FLOTILLA_ADDR")]
    pub server: Option<String>,
    /// API token (`flt_...`), sent as `Authorization: Bearer`. Default: the saved login's.
    /// `cluster init` and `token bootstrap` print the first one; an empty value sends none.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA's certificates (PEM: the `ca.crt` of `flotilla tls ca-create`), the only
    /// ones trusted for the servers' HTTPS. Default: the saved login's.
    #[arg(long, global = true, env = "FLOTILLA_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub output: Format,
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Subcommand)]
pub enum CliCommand {
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(commands::ClusterCmd),
    /// Submit, inspect and cancel pipelines.
    #[command(subcommand)]
    Pipeline(commands::PipelineCmd),
    /// Inspect jobs, read their logs, cancel them.
    #[command(subcommand)]
    Job(commands::JobCmd),
    /// Register, list, drain and remove worker pools.
    #[command(subcommand)]
    Pool(commands::PoolCmd),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// Tenants' quotas and use.
    #[command(subcommand)]
    Tenant(admin::TenantCmd),
    /// The limits every input is checked against.
    #[command(subcommand)]
    Limits(admin::LimitsCmd),
    /// How long finished pipelines and their output are kept, and what was removed.
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// The cluster's certificate authority.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
    /// A tenant's secrets: set from standard input, listed by name, deleted; keys rotated.
    #[command(subcommand)]
    Secret(secrets::SecretCmd),
    /// A tenant's source repositories: registered, listed with their deliveries, run by hand.
    #[command(subcommand)]
    Repo(repos::RepoCmd),
    /// Run a repository's pipeline file on a cron schedule.
    #[command(subcommand)]
    Schedule(repos::ScheduleCmd),
    /// Signed notifications of a tenant's pipelines to URLs.
    #[command(subcommand)]
    Notifier(repos::NotifierCmd),
    /// The tenants' caches and what they take; clear one or all.
    #[command(subcommand)]
    Cache(caches::CacheCmd),
    /// Print the cluster's events (Server-Sent Events from any node); `--follow` streams.
    Events(events::EventsArgs),
    /// Start a local 3-node cluster on 127.0.0.1 with a process pool; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Check a token against the cluster, then save it and the servers for the next commands
    /// (`$FLOTILLA_CONFIG`, else ~/.config/flotilla/config.json, mode 0600).
    Login(LoginArgs),
    /// Forget the saved token (the saved servers stay).
    Logout,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Read the token from this file (one line) rather than --token or FLOTILLA_TOKEN.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

/// `flotilla login`: the token given, checked with a read every role may do, then saved with
/// the servers and the CA (as an absolute path).
async fn login(given: config::Login, args: &LoginArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = config::path()?;
    let saved = config::load(&path).unwrap_or_default();
    let token = given.token.clone();
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .trim()
            .to_string(),
        None => token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .context("give the token with --token-file, --token or FLOTILLA_TOKEN")?,
    };
    let resolved = config::resolve(given, &saved);
    let ca_file = match &resolved.ca_file {
        Some(p) => Some(std::path::absolute(p).with_context(|| format!("--ca-file {}", p.display()))?),
        None => None,
    };
    let server = resolved.server;
    let client = client::Client::new(&server, Some(&token), ca_file.as_deref())?;
    client
        .get("/v1/pools")
        .await
        .context("the cluster did not accept this token")?;
    let login = config::Login {
        server: Some(server.clone()),
        token: Some(token),
        ca_file,
    };
    config::save(&path, &login)?;
    println!("logged in to {server}; saved in {}", path.display());
    Ok(())
}

/// `flotilla logout`: the saved login without its token.
fn logout() -> anyhow::Result<()> {
    let path = config::path()?;
    let mut saved = config::load(&path)?;
    if saved.token.take().is_none() {
        println!("no token was saved in {}", path.display());
        return Ok(());
    }
    config::save(&path, &saved)?;
    println!("the token saved in {} is forgotten", path.display());
    Ok(())
}

/// The client for the servers, token and CA the flags, the environment or the saved login
/// name.
fn connect(given: config::Login) -> anyhow::Result<client::Client> {
    let saved = match (&given.server, &given.token, &given.ca_file, config::path()) {
        (Some(_), Some(_), Some(_), _) | (_, _, _, Err(_)) => config::Login::default(),
        (_, _, _, Ok(path)) => config::load(&path)?,
    };
    let resolved = config::resolve(given, &saved);
    client::Client::new(&resolved.server, resolved.token.as_deref(), resolved.ca_file.as_deref())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let given = config::Login {
        server: cli.server.clone(),
        token: cli.token.clone(),
        ca_file: cli.ca_file.clone(),
    };
    let result = match cli.command {
        CliCommand::Dev(args) => dev::run(args).await,
        CliCommand::Tls(ref command) => tls::run(command),
        CliCommand::Secret(secrets::SecretCmd::GenerateKey) => {
            println!("{}", flotilla_cli::secrets_key());
            Ok(())
        }
        CliCommand::Login(ref args) => login(given, args).await,
        CliCommand::Logout => logout(),
        ref other => match connect(given) {
            Ok(client) => match other {
                CliCommand::Events(args) => events::run(&client, cli.output, args).await,
                CliCommand::Secret(cmd) => secrets::run(&client, cli.output, cmd).await,
                CliCommand::Repo(cmd) => repos::run(&client, cli.output, cmd).await,
                CliCommand::Schedule(cmd) => repos::schedule(&client, cli.output, cmd).await,
                CliCommand::Notifier(cmd) => repos::notifier(&client, cli.output, cmd).await,
                CliCommand::Cache(cmd) => caches::cache(&client, cli.output, cmd).await,
                other => commands::run(&client, cli.output, other).await,
            },
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every command and argument (names used twice, a subcommand's
    /// argument with the name of a global one, conflicts naming no argument): failures here
    /// are panics at parse time for whoever types the command.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// A subcommand's argument that reuses a global one's id parses, then panics when read
    /// (`--output` of `job artifacts` did): each form is parsed through to the values.
    #[test]
    fn job_artifacts_parses_beside_the_global_output_format() {
        use clap::Parser;
        for argv in [
            &["flotilla", "job", "artifacts", "3"][..],
            &["flotilla", "job", "artifacts", "3", "--save", "a.tar.zst"],
            &["flotilla", "job", "artifacts", "3", "--extract", "out"],
            &["flotilla", "-o", "json", "job", "artifacts", "3"],
        ] {
            super::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        assert!(
            super::Cli::try_parse_from(["flotilla", "job", "artifacts", "3", "--save", "a", "--extract", "b"]).is_err()
        );
    }
    #[test]
    fn cache_clear_takes_a_key_or_all() {
        use clap::Parser;
        for argv in [
            &["flotilla", "cache", "list"][..],
            &["flotilla", "cache", "list", "--tenant", "t"],
            &["flotilla", "cache", "clear", "deps"],
            &["flotilla", "cache", "clear", "--all", "--tenant", "t"],
        ] {
            super::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        assert!(super::Cli::try_parse_from(["flotilla", "cache", "clear"]).is_err());
        assert!(super::Cli::try_parse_from(["flotilla", "cache", "clear", "deps", "--all"]).is_err());
    }
}
