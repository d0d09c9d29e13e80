"""The legacy client's whole lists, from pages served by a fake Submit."""

from llmchatlinker.client.paging import MAX_PAGE_SIZE, run_whole
from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2 as user_pb


def paged_users(names: list[str], per_page: int):
    """A fake `run` serving `names` as users, `per_page` at a time; records what it was asked."""
    asked = []

    def run(instruction: pb.Instruction) -> pb.Result:
        asked.append(instruction)
        start = int(instruction.user_list.page_token or 0)
        end = start + per_page
        page = pb.UserPage(users=[user_pb.User(username=name) for name in names[start:end]],
                           next_page_token=str(end) if end < len(names) else "")
        return pb.Result(final=True, users=page)

    return run, asked


def test_a_list_is_fetched_to_its_last_page():
    names = [f"user{i}" for i in range(7)]
    run, asked = paged_users(names, per_page=3)
    result = run_whole(run, pb.Instruction(user_list=pb.UserList()))
    assert [user.username for user in result.users.users] == names
    assert result.users.next_page_token == ""
    assert len(asked) == 3
    assert asked[0].user_list.page_size == MAX_PAGE_SIZE


def test_an_error_on_a_later_page_is_the_result():
    run, _ = paged_users(["a", "b", "c"], per_page=1)

    def failing_second_page(instruction):
        if instruction.user_list.page_token:
            return pb.Result(final=True, status=pb.Status(code=14, message="down"))
        return run(instruction)

    result = run_whole(failing_second_page, pb.Instruction(user_list=pb.UserList()))
    assert result.status.code == 14


def test_a_chats_older_messages_are_put_first():
    pages = {"": (["m3", "m4"], "older"), "older": (["m1", "m2"], "")}

    def run(instruction):
        contents, token = pages[instruction.chat_load.message_page_token]
        view = pb.ChatView(messages=[chat_pb.Message(content=c) for c in contents], next_message_page_token=token)
        return pb.Result(final=True, chat=view)

    result = run_whole(run, pb.Instruction(chat_load=pb.ChatLoad(chat_id="c")))
    assert [m.content for m in result.chat.messages] == ["m1", "m2", "m3", "m4"]


def test_an_instruction_that_is_no_list_runs_once():
    asked = []

    def run(instruction):
        asked.append(instruction)
        return pb.Result(final=True, user=user_pb.User(username="ada"))

    assert run_whole(run, pb.Instruction(user_get=pb.UserGet(username="ada"))).user.username == "ada"
    assert len(asked) == 1
