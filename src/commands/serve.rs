//! `ossterm serve`: load the model on the engine thread, then answer OpenAI-style HTTP.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::ServeArgs;
use crate::config::{DEFAULT_MODEL, parse_effort};
use crate::engine::{self, EngineOptions, Event, ModelSource, SamplingParams};
use crate::server::request::RequestDefaults;
use crate::server::{self, DEFAULT_BODY_LIMIT_BYTES, ServeOptions};

/// Runs the server until the process is stopped.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let api_key = api_key(args)?;
    let addresses = resolve(&args.host, args.port)?;
    let ips: Vec<_> = addresses.iter().map(SocketAddr::ip).collect();
    if api_key.is_none() && !server::is_loopback(&ips) {
        bail!(
            "--host {} is reachable from other machines, so ossterm serve needs an API key: add --api-key KEY or --api-key-env VAR (clients send 'Authorization: Bearer KEY'), or serve on 127.0.0.1",
            args.host
        );
    }
    let effort =
        parse_effort(&args.effort).map_err(|problem| anyhow::anyhow!("--effort {problem}"))?;
    let source = if args.demo {
        ModelSource::Local(super::app::demo_model_dir()?)
    } else {
        let model = args
            .model
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        if Path::new(&model).is_dir() {
            ModelSource::Local(PathBuf::from(model))
        } else {
            ModelSource::Hub {
                id: model,
                revision: args.model.revision.clone(),
            }
        }
    };
    let model_name = if args.demo {
        "ossterm-demo".to_string()
    } else {
        source.display_name()
    };
    let engine_options = EngineOptions {
        source,
        device: args.model.device.unwrap_or_default(),
        dtype: args.model.dtype,
        kernels: args.model.kernels.into(),
        context_limit: args.context,
        effort,
        sampling: SamplingParams::default(),
    };
    let options = ServeOptions {
        model_name,
        queue_limit: usize::try_from(args.queue).context("--queue is too large")?,
        api_key,
        defaults: RequestDefaults {
            sampling: SamplingParams::default(),
            effort,
        },
        body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(engine_options, options, &addresses))
}

async fn serve(
    engine_options: EngineOptions,
    options: ServeOptions,
    addresses: &[SocketAddr],
) -> anyhow::Result<()> {
    let mut engine = engine::spawn(engine_options);
    let mut last_stage = String::new();
    loop {
        match engine.events.recv().await {
            Some(Event::Ready(_)) => break,
            Some(Event::LoadProgress { stage, .. }) if stage != last_stage => {
                eprintln!("loading: {stage}");
                last_stage = stage;
            }
            Some(Event::Error {
                message,
                fatal: true,
            }) => bail!("cannot load the model: {message}"),
            None => bail!("the engine stopped while loading the model"),
            Some(_) => {}
        }
    }
    let listener = tokio::net::TcpListener::bind(addresses)
        .await
        .with_context(|| format!("cannot listen on {addresses:?}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // The scheduler takes the engine's events from here on; the handle keeps the thread.
    let (_, unused) = tokio::sync::mpsc::unbounded_channel();
    let events = std::mem::replace(&mut engine.events, unused);
    let state = server::state(options, engine.commands.clone(), events);
    // Tests and scripts read the address from this first stdout line.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{local}")?;
    stdout.flush()?;
    axum::serve(listener, server::router(state))
        .await
        .context("the HTTP server stopped")?;
    engine.shutdown();
    Ok(())
}

fn api_key(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let key = match (&args.api_key, &args.api_key_env) {
        (Some(key), _) => key.clone(),
        (None, Some(var)) => std::env::var(var).with_context(|| {
            format!("--api-key-env {var}: the environment variable is not set (or not UTF-8)")
        })?,
        (None, None) => return Ok(None),
    };
    if key.trim().is_empty() {
        bail!("the API key is empty: give a non-empty --api-key or --api-key-env variable");
    }
    Ok(Some(key))
}

fn resolve(host: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let addresses: Vec<_> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --host {host}"))?
        .collect();
    if addresses.is_empty() {
        bail!("--host {host} resolves to no address");
    }
    Ok(addresses)
}
