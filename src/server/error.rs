//! The OpenAI-style error body every refusal carries:
//! `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A request the server refuses, with what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong and where, for a person.
    pub message: String,
    /// OpenAI's error class (`invalid_request_error`, `rate_limit_error`, ...).
    pub kind: &'static str,
    /// The request field at fault (`messages[1].role`), when there is one.
    pub param: Option<String>,
    /// A short machine-readable reason (`invalid_json`, `queue_full`, ...).
    pub code: Option<&'static str>,
    /// Seconds the client should wait before retrying (429 and 503 only).
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    /// A 400 about one field of the request.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after_secs: None,
        }
    }

    /// A refusal with no single field at fault.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: String,
    ) -> Self {
        Self {
            status,
            message,
            kind,
            param: None,
            code: Some(code),
            retry_after_secs: None,
        }
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body, also sent as an SSE `data:` event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = super::response::json_response(self.status, &self.body());
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_message_type_param_and_code() {
        let error = ApiError::invalid("temperature", "temperature is -1").with_code("bad_value");
        assert_eq!(
            error.body(),
            serde_json::json!({"error": {"message": "temperature is -1",
                "type": "invalid_request_error", "param": "temperature", "code": "bad_value"}})
        );
    }
}
