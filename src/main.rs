//! Placeholder entry point (the integrator replaces it): wires the contracts commands only.
use clap::Parser;
use flowctl::cli::contracts as c;

#[derive(Parser)]
#[command(name = "flowctl")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Avro schemas in schemas/.
    #[command(subcommand)]
    Schemas(c::SchemasCmd),
    /// The schema registry.
    #[command(subcommand)]
    Registry(c::RegistryCmd),
    /// Produce synthetic events.
    Produce(c::ProduceArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(c::BenchCmd),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let db = c::state_db();
    let code = match cli.cmd {
        Cmd::Schemas(s) => c::schemas(s, &db).await?,
        Cmd::Registry(r) => c::registry(r, &db).await?,
        Cmd::Produce(p) => c::produce(p, &db).await?,
        Cmd::Bench(b) => c::bench(b, &db).await?,
    };
    std::process::exit(code);
}
