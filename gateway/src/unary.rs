//! gRPC unary messages for the calls the gateway decodes: the 5-byte frame around a
//! protobuf message, and the answers it builds itself. Relayed calls never come here:
//! their bytes pass unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

use crate::{answer::Answer, error::GatewayError, message::Message};

/// Decodes a request message (uncompressed, exactly one message).
pub fn decode<T: prost::Message + Default>(message: &Message) -> Result<T, GatewayError> {
    let bytes = message.contiguous();
    let invalid = |problem: &str| GatewayError::InvalidMessage(problem.to_owned());
    let (header, body) = bytes
        .split_at_checked(5)
        .ok_or_else(|| invalid("shorter than a gRPC message header"))?;
    if header[0] != 0 {
        return Err(invalid("compressed messages are not accepted"));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len != body.len() {
        return Err(invalid("the message length does not match its frame"));
    }
    T::decode(body).map_err(|_| invalid("not a valid protobuf message of the method's type"))
}

/// A framed message.
pub fn encode(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    // Encoding into a buffer with room for the whole message cannot fail.
    let _ = message.encode(&mut out);
    out.freeze()
}

/// A successful answer carrying `message`.
pub fn answer(message: &impl prost::Message) -> Answer {
    let mut head = http::Response::new(()).into_parts().0;
    head.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    Answer {
        head,
        data: Message::from(encode(message)),
        trailers: Some(trailers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_proto::v1::VerifyIdentityRequest;

    #[test]
    fn messages_round_trip_and_bad_frames_are_refused() {
        let request = VerifyIdentityRequest {
            name: "张伟".into(),
            ..Default::default()
        };
        let framed = Message::from(encode(&request));
        assert_eq!(decode::<VerifyIdentityRequest>(&framed).unwrap(), request);
        for bad in [
            &b"\0\0\0"[..],
            b"\x01\0\0\0\0",
            b"\0\0\0\0\x09abc",
            b"\0\0\0\0\x02\xff\xff",
        ] {
            let err = decode::<VerifyIdentityRequest>(&Message::from(Bytes::copy_from_slice(bad)))
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        let answer = answer(&request);
        assert_eq!(answer.grpc_status().unwrap(), "0");
    }
}
