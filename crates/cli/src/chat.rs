//! `evolution chat`.

use std::io::Write;

use evolution_client::ChatRequest;
use futures_util::StreamExt;

use crate::args::ChatArgs;
use crate::failure::Failure;
use crate::target::Target;

pub(crate) async fn run(args: ChatArgs) -> Result<(), Failure> {
    let target = Target::build(&args.target, |builder, _| builder).await?;
    let mut request = ChatRequest::new();
    if let Some(system) = &args.system {
        request = request.system(system);
    }
    request = request.user(args.prompt.join(" "));
    if let Some(max_tokens) = args.max_tokens {
        request = request.max_tokens(max_tokens);
    }
    if let Some(temperature) = args.temperature {
        request = request.temperature(temperature);
    }
    let mut stdout = std::io::stdout().lock();
    if args.stream {
        let mut stream = target.client.stream(request).await?;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    let _ = write!(stdout, "{}", chunk.text());
                    let _ = stdout.flush();
                }
                // The answer so far is incomplete: end its line, then fail (exit non-zero)
                // with the stream's error, so that a script never takes it for the answer.
                Err(error) => {
                    let _ = writeln!(stdout);
                    return Err(error.into());
                }
            }
        }
        let _ = writeln!(stdout);
    } else {
        let response = target.client.chat(request).await?;
        let _ = writeln!(stdout, "{}", response.text().unwrap_or_default());
    }
    Ok(())
}
