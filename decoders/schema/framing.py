"""Standard framing: MoldUDP64 datagrams and SoupBinTCP 3.0 packets, byte for byte.

MoldUDP64 (Nasdaq MoldUDP64 Protocol Specification V1.00), §"Downstream Packet":
    Session         10  Alpha    space padded on the right
    Sequence Number  8  Integer  big-endian; sequence number of the first message
    Message Count    2  Integer  0 = heartbeat, 0xFFFF = end of session
    Message Blocks:  Message Length (2, big-endian) + Message Data, `count` times
§"Request Packet": the same 20-byte header, the count being the number of messages
wanted from `Sequence Number` on; sent unicast to a re-request server, answered with
ordinary downstream packets sent unicast back.

Project rule (out-of-band control): a downstream packet whose Sequence Number is 0
never carries sequenced data (MoldUDP64 sequences start at 1); a re-request server
uses it to send a retransmission reject to the requester.

SoupBinTCP 3.0 (Nasdaq SoupBinTCP Specification 3.00): every packet is
`Packet Length` (2, big-endian, counts the type byte and payload) + `Packet Type` (1)
+ payload. Alpha fields are left-justified and space padded, numeric fields are ASCII
digits right-justified and space padded on the left.
"""

from __future__ import annotations

from construct import Array, Bytes, Const, Enum, GreedyBytes, If, Int8ub, Int16ub, Int64ub, Struct, this

__all__ = [
    "SESSION_LENGTH",
    "HEARTBEAT_COUNT",
    "END_OF_SESSION_COUNT",
    "CONTROL_SEQUENCE",
    "MAX_MESSAGES_PER_PACKET",
    "MessageBlock",
    "DownstreamPacket",
    "DownstreamHeader",
    "RequestPacket",
    "SoupHeader",
    "SOUP_PACKETS",
    "LoginRequest",
    "LoginAccepted",
    "LoginRejected",
    "SequencedData",
    "UnsequencedData",
    "ServerHeartbeat",
    "ClientHeartbeat",
    "EndOfSession",
    "LogoutRequest",
    "Debug",
]

SESSION_LENGTH = 10
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
CONTROL_SEQUENCE = 0
MAX_MESSAGES_PER_PACKET = 0xFFFE

MessageBlock = Struct(
    "message_length" / Int16ub * "length of the message data in bytes",
    "message_data" / Bytes(this.message_length) * "one market-data message; first byte is its type",
)

DownstreamHeader = Struct(
    "session" / Bytes(SESSION_LENGTH) * "session name, 10 ASCII bytes, space padded",
    "sequence_number" / Int64ub * "sequence number of the first message (next expected on a heartbeat)",
    "message_count" / Int16ub * "messages in this packet; 0 = heartbeat, 0xFFFF = end of session",
)

DownstreamPacket = Struct(
    "session" / Bytes(SESSION_LENGTH) * "session name, 10 ASCII bytes, space padded",
    "sequence_number" / Int64ub * "sequence number of the first message (next expected on a heartbeat)",
    "message_count" / Int16ub * "messages in this packet; 0 = heartbeat, 0xFFFF = end of session",
    "message_blocks"
    / If(this.message_count != END_OF_SESSION_COUNT, Array(this.message_count, MessageBlock))
    * "the messages, each prefixed by its length",
)

RequestPacket = Struct(
    "session" / Bytes(SESSION_LENGTH) * "session whose messages are wanted",
    "sequence_number" / Int64ub * "first sequence number wanted",
    "requested_message_count" / Int16ub * "number of messages wanted from sequence_number on",
)

SoupHeader = Struct(
    "packet_length" / Int16ub * "bytes that follow this field: the type byte and the payload",
    "packet_type" / Bytes(1) * "packet type character",
)

LoginRequest = Struct(
    "packet_length" / Const(47, Int16ub) * "always 47",
    "packet_type" / Const(b"L") * "login request",
    "username" / Bytes(6) * "username, left-justified, space padded",
    "password" / Bytes(10) * "password, left-justified, space padded",
    "requested_session" / Bytes(SESSION_LENGTH) * "session to log into; all spaces = the current one",
    "requested_sequence_number" / Bytes(20) * "ASCII number of the next message wanted; 0 = latest",
)

LoginAccepted = Struct(
    "packet_length" / Const(31, Int16ub) * "always 31",
    "packet_type" / Const(b"A") * "login accepted",
    "session" / Bytes(SESSION_LENGTH) * "session the client is logged into",
    "sequence_number" / Bytes(20) * "ASCII number of the next sequenced message the server will send",
)

LoginRejected = Struct(
    "packet_length" / Const(2, Int16ub) * "always 2",
    "packet_type" / Const(b"J") * "login rejected",
    "reject_reason_code"
    / Enum(Int8ub, not_authorized=ord("A"), session_not_available=ord("S"))
    * "A = not authorized, S = requested session not available",
)

SequencedData = Struct(
    "packet_length" / Int16ub * "1 + length of the message",
    "packet_type" / Const(b"S") * "sequenced data",
    "message" / GreedyBytes * "one market-data message; its sequence number is implicit",
)

UnsequencedData = Struct(
    "packet_length" / Int16ub * "1 + length of the message",
    "packet_type" / Const(b"U") * "unsequenced data",
    "message" / GreedyBytes * "one message outside the sequenced stream",
)

Debug = Struct(
    "packet_length" / Int16ub * "1 + length of the text",
    "packet_type" / Const(b"+") * "debug",
    "text" / GreedyBytes * "free text, to be ignored by the peer",
)

ServerHeartbeat = Struct("packet_length" / Const(1, Int16ub), "packet_type" / Const(b"H") * "server heartbeat")
ClientHeartbeat = Struct("packet_length" / Const(1, Int16ub), "packet_type" / Const(b"R") * "client heartbeat")
EndOfSession = Struct("packet_length" / Const(1, Int16ub), "packet_type" / Const(b"Z") * "end of session")
LogoutRequest = Struct("packet_length" / Const(1, Int16ub), "packet_type" / Const(b"O") * "logout request")

SOUP_PACKETS = {
    "login_request": LoginRequest,
    "login_accepted": LoginAccepted,
    "login_rejected": LoginRejected,
    "sequenced_data": SequencedData,
    "unsequenced_data": UnsequencedData,
    "server_heartbeat": ServerHeartbeat,
    "client_heartbeat": ClientHeartbeat,
    "end_of_session": EndOfSession,
    "logout_request": LogoutRequest,
    "debug": Debug,
}
