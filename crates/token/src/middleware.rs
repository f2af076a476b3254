//! Bearer authentication for [`reqwest_middleware`] users.

use http::{Extensions, StatusCode, header::AUTHORIZATION};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::TokenManager;

/// A [`reqwest_middleware::Middleware`] that sets `Authorization: Bearer` from a
/// [`TokenManager`] and, on a 401, invalidates that token and resends once
/// (when the request body can be cloned; streaming bodies are sent once).
///
/// ```no_run
/// use evolution_token::{AuthMiddleware, Credentials, TokenManager};
///
/// # fn run() -> Result<(), evolution_token::TokenError> {
/// let tokens = TokenManager::builder(Credentials::from_env()?).build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(AuthMiddleware::new(tokens))
///     .build();
/// # drop(client);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    tokens: TokenManager,
}

impl AuthMiddleware {
    /// A middleware taking tokens from `tokens`.
    pub fn new(tokens: TokenManager) -> Self {
        Self { tokens }
    }
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let token = self
            .tokens
            .get_token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.bearer_header());
        let copy = request.try_clone();
        let response = next.clone().run(request, extensions).await?;
        let (StatusCode::UNAUTHORIZED, Some(mut request)) = (response.status(), copy) else {
            return Ok(response);
        };
        tracing::debug!(
            key_id = token.key_id(),
            "401 from the API: invalidating the token and resending once"
        );
        self.tokens.invalidate_if_current(&token);
        let token = self
            .tokens
            .get_token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.bearer_header());
        next.run(request, extensions).await
    }
}
