"""The server around the rules: records, results and remembered requests outlive a restart."""

from llmchatlinker.db.v1 import db_service_pb2 as pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as pb_grpc


def test_records_results_and_remembered_requests_survive_a_restart(start_server, connect):
    first = start_server()
    before = pb_grpc.RecordServiceStub(connect(first.port))
    create = pb.CreateRecordRequest(request_id="rec-1", user_id="user-1", instruction="CHAT_CREATE")
    created = before.CreateRecord(create).record
    before.PutResult(pb.PutResultRequest(instruction_id="ins-1", result=b"kept"))
    first.stop()

    second = start_server()
    after = pb_grpc.RecordServiceStub(connect(second.port))

    assert list(after.ListRecords(pb.ListRecordsRequest(user_id="user-1")).records) == [created]
    assert after.CreateRecord(create).record == created
    assert after.GetResult(pb.GetResultRequest(instruction_id="ins-1")).result == b"kept"
