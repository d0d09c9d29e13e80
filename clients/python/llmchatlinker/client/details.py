"""The google.rpc.ErrorInfo a failed call carries, read without googleapis-common-protos.

The suite attaches it in the `grpc-status-details-bin` trailer (a serialized google.rpc.Status).
Only the fields the client reads are declared here, wire-compatible with google/rpc/status.proto
and error_details.proto, in a pool of their own so they never clash with the real definitions.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DETAILS_TRAILER = "grpc-status-details-bin"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_INT32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def _classes():
    file = descriptor_pb2.FileDescriptorProto(name="llmchatlinker_client_details.proto",
                                              package="llmchatlinker.client.details", syntax="proto3")

    def message(name: str, *fields: tuple) -> None:
        proto = file.message_type.add(name=name)
        for number, (field_name, kind, label, type_name) in enumerate(fields, start=1):
            field = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    message("Any", ("type_url", _STRING, _OPTIONAL, ""), ("value", _BYTES, _OPTIONAL, ""))
    message("Status", ("code", _INT32, _OPTIONAL, ""), ("message", _STRING, _OPTIONAL, ""),
            ("details", _MESSAGE, _REPEATED, ".llmchatlinker.client.details.Any"))
    message("ErrorInfo", ("reason", _STRING, _OPTIONAL, ""), ("domain", _STRING, _OPTIONAL, ""))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
                 for name in ("Status", "ErrorInfo"))


_Status, _ErrorInfo = _classes()


def error_info(error: object):
    """The ErrorInfo (`.reason`, `.domain`) in a failed call's trailers; None when there is none."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != DETAILS_TRAILER or not isinstance(value, bytes):
            continue
        try:
            status = _Status.FromString(value)
            for detail in status.details:
                if detail.type_url == ERROR_INFO_TYPE:
                    return _ErrorInfo.FromString(detail.value)
        except Exception:  # a malformed trailer is no reason to hide the call's own error
            return None
    return None
