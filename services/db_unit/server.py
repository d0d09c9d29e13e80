"""RecordService over gRPC: proto in, one transaction per call, proto out."""

import pathlib

from llmchatlinker.db.v1 import db_service_pb2 as pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as pb_grpc
from services.common.admission import Admission
from services.common.db import Database, run_once
from services.common.errors import maps_errors
from services.common.protoconv import timestamp
from services.common.retention import Pruner
from services.common.serving import ThreadedServer, run_threaded_unit
from services.db_unit import service, store
from services.db_unit.config import Settings
from services.db_unit.errors import DOMAIN


MIGRATIONS = pathlib.Path(__file__).resolve().parent / "migrations"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecordService"].full_name


def record_proto(record: service.Record) -> pb.Record:
    return pb.Record(
        record_id=record.record_id,
        user_id=record.user_id,
        chat_id=record.chat_id,
        instruction=record.instruction,
        instruction_id=record.instruction_id,
        outcome=record.outcome,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


class RecordServicer(pb_grpc.RecordServiceServicer):
    def __init__(self, database: Database):
        self._database = database

    @maps_errors(DOMAIN)
    def CreateRecord(self, request: pb.CreateRecordRequest, context) -> pb.CreateRecordResponse:
        service.check_request_id(request.request_id)
        new = service.new_record(
            request.user_id, request.chat_id, request.instruction, request.instruction_id, request.outcome
        )

        def apply(session) -> pb.CreateRecordResponse:
            return pb.CreateRecordResponse(record=record_proto(store.Records(session).add(new)))

        return run_once(self._database, request.request_id, pb.CreateRecordResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def ListRecords(self, request: pb.ListRecordsRequest, context) -> pb.ListRecordsResponse:
        with self._database.reading() as connection:
            found, next_token = service.list_records(
                store.Records(connection), request.user_id, request.page_size, request.page_token
            )
            records = [record_proto(record) for record in found]
            return pb.ListRecordsResponse(records=records, next_page_token=next_token)

    @maps_errors(DOMAIN)
    def DeleteRecords(self, request: pb.DeleteRecordsRequest, context) -> pb.DeleteRecordsResponse:
        service.check_request_id(request.request_id)
        user_id = service.check_user_id(request.user_id)

        def apply(session) -> pb.DeleteRecordsResponse:
            return pb.DeleteRecordsResponse(deleted_count=store.Records(session).delete_all(user_id))

        return run_once(self._database, request.request_id, pb.DeleteRecordsResponse.FromString, apply)

    # The result calls build their reply after the transaction: on SQLite a writer holds the
    # database's write lock until it ends.
    @maps_errors(DOMAIN)
    def PutResult(self, request: pb.PutResultRequest, context) -> pb.PutResultResponse:
        with self._database.writing() as connection:
            result, already_stored, digest = service.put_result(
                store.Results(connection), request.instruction_id, request.result, request.request_digest
            )
        return pb.PutResultResponse(result=result, already_stored=already_stored, request_digest=digest)

    @maps_errors(DOMAIN)
    def PutResults(self, request: pb.PutResultsRequest, context) -> pb.PutResultsResponse:
        entries = [(entry.instruction_id, entry.result, entry.request_digest) for entry in request.results]
        with self._database.writing() as connection:
            answers = service.put_results(store.Results(connection), entries)
        response = pb.PutResultsResponse()
        add = response.results.add
        for result, already_stored, digest in answers:
            add(result=result, already_stored=already_stored, request_digest=digest)
        return response

    @maps_errors(DOMAIN)
    def GetResult(self, request: pb.GetResultRequest, context) -> pb.GetResultResponse:
        with self._database.reading() as connection:
            stored = service.get_result(store.Results(connection), request.instruction_id)
        return pb.GetResultResponse(result=stored.result, create_time=timestamp(stored.created_at),
                                    request_digest=stored.request_digest)

    @maps_errors(DOMAIN)
    def CountDelivery(self, request: pb.CountDeliveryRequest, context) -> pb.CountDeliveryResponse:
        instruction_id = service.check_instruction_id(request.instruction_id)
        with self._database.writing() as connection:
            deliveries = store.count_delivery(connection, instruction_id)
        return pb.CountDeliveryResponse(deliveries=deliveries)

    @maps_errors(DOMAIN)
    def GetResults(self, request: pb.GetResultsRequest, context) -> pb.GetResultsResponse:
        with self._database.reading() as connection:
            found = service.get_results(store.Results(connection), request.instruction_ids)
        response = pb.GetResultsResponse()
        add = response.results.add
        for stored in found:
            add(instruction_id=stored.instruction_id, result=stored.result, create_time=timestamp(stored.created_at),
                request_digest=stored.request_digest)
        return response


def build_server(settings: Settings) -> ThreadedServer:
    """A server on the settings' address, its database migrated to the newest schema."""
    def servicer(database: Database) -> RecordServicer:
        database.migrate(MIGRATIONS, store.metadata)
        return RecordServicer(database)

    database = Database(settings.database_url, settings.database_schema)
    return ThreadedServer.on_database(database, servicer, pb_grpc.add_RecordServiceServicer_to_server, SERVICE_NAME,
                                      settings.address, Admission(settings.tls, settings.internal_token, DOMAIN),
                                      pruner=Pruner(database, store.RETENTION_RULES, settings.retention))


def main() -> None:
    run_threaded_unit("db_unit", Settings.from_env, build_server)
