//! Serve a seeded TinyCRM on 127.0.0.1 until stdin closes or the process is
//! killed: `tinycrm [CONTACTS] [TOKEN]`. Prints its URL as the first line.

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(25);
    let token = args.next().unwrap_or_else(|| "demo-token".to_string());
    let server = nexo_tests::tinycrm::start(nexo_tests::tinycrm::seed(n), &token).await;
    let mut out = std::io::stdout();
    writeln!(out, "{}", server.url())?;
    out.flush()?;
    // Run until our parent closes stdin (or kills us).
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    })
    .await?;
    Ok(())
}
