"""The db unit's error domain and the errors only it raises."""

from services.common.errors import NotFound

DOMAIN = "db.llmchatlinker.dev"


class ResultNotFound(NotFound):
    """No result is stored under the instruction id."""

    default_reason = "RESULT_NOT_FOUND"

    def __init__(self, instruction_id: str):
        super().__init__(f"no result is stored for instruction '{instruction_id}'", instruction_id=instruction_id)
