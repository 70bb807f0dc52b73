//! Conversions between wire messages and domain values. Parsing failures name the field and
//! become INVALID_ARGUMENT at the adapter. A token request is held to the domain's limits
//! ([`TokenRequest::MAX_SCOPES`] and the lengths of its values) here, once, before it
//! reaches the issuer.

use tollgate_domain::{
    ApiIdentifier, ClientId, ClientSecret, InvalidValue, IssuedToken, RequestOrigin, TenantName,
    TokenCallRequest, TokenRequest, Transport, UnixTime,
};

use crate::v1;

/// A unix time as a protobuf timestamp.
pub fn timestamp(seconds: UnixTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// A client-authenticated call about a token (revocation, introspection): its fields as
/// the messages carry them; an empty token is refused.
pub fn token_call(
    tenant: &str,
    client_id: &str,
    client_secret: String,
    token: String,
    origin: RequestOrigin,
) -> Result<TokenCallRequest, InvalidValue> {
    if token.is_empty() {
        return Err(InvalidValue::new("token", "must not be empty"));
    }
    Ok(TokenCallRequest {
        tenant: TenantName::parse(tenant)?,
        client_id: ClientId::parse(client_id)?,
        client_secret: ClientSecret::new(client_secret),
        token,
        origin,
    })
}

impl TryFrom<v1::IssueTokenRequest> for TokenRequest {
    type Error = InvalidValue;

    fn try_from(request: v1::IssueTokenRequest) -> Result<Self, Self::Error> {
        // Counted before anything is parsed: an oversized list costs no more than a small one.
        let scopes =
            TokenRequest::parse_scopes(request.scopes.iter().map(String::as_str), "scopes")?;
        Ok(TokenRequest {
            tenant: TenantName::parse(&request.tenant)?,
            client_id: ClientId::parse(&request.client_id)?,
            client_secret: ClientSecret::new(request.client_secret),
            audience: ApiIdentifier::parse(&request.audience)
                .map_err(|error| error.for_field("audience"))?,
            scopes,
            // Known only to the transport, which fills it in.
            origin: RequestOrigin::new(Transport::Grpc, None),
        })
    }
}

impl From<IssuedToken> for v1::IssueTokenResponse {
    fn from(token: IssuedToken) -> Self {
        Self {
            access_token: token.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: token.expires_in,
            scopes: token.scopes.to_strings(),
        }
    }
}
