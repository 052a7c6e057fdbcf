//! DSSE v1 envelopes (<https://github.com/secure-systems-lab/dsse>): the
//! pre-authentication encoding and pure Ed25519 (RFC 8032) signatures over it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The payload type of every agentplane envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Sign `body` (the exact statement bytes) with `signer`.
    pub fn sign(body: &[u8], signer: &super::keys::Signer) -> Envelope {
        let sig = signer.sign(&pae(PAYLOAD_TYPE, body));
        Envelope {
            payload_type: PAYLOAD_TYPE.to_string(),
            payload: B64.encode(body),
            signatures: vec![Signature { keyid: signer.key_id().to_string(), sig: B64.encode(sig) }],
        }
    }

    /// The decoded payload bytes.
    pub fn body(&self) -> Result<Vec<u8>, base64::DecodeError> {
        B64.decode(&self.payload)
    }
}

/// Decode a base64 signature into its 64 bytes.
pub fn decode_sig(sig: &str) -> Option<[u8; 64]> {
    B64.decode(sig).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_vector() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    /// An independent encoding of PAE (format!, byte lengths) must agree for
    /// multi-byte UTF-8 types and binary bodies, where char counts would differ.
    #[test]
    fn pae_round_trips_through_an_independent_encoding() {
        let cases: [(&str, &[u8]); 3] =
            [("application/vnd.in-toto+json", b"{\"a\":1}"), ("t\u{e9}l\u{e9}", b"\x00\xff\n"), ("x", &[b' '; 300])];
        for (t, body) in cases {
            let mut expected = format!("DSSEv1 {} {} {} ", t.len(), t, body.len()).into_bytes();
            expected.extend_from_slice(body);
            assert_eq!(pae(t, body), expected);
        }
    }
}
