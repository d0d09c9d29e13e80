"""Conversions between Python values and protobuf well-known types."""

import datetime

from google.protobuf import timestamp_pb2


def timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    if moment is not None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        stamp.FromDatetime(moment)
    return stamp
