from sqlalchemy import Engine, text


def test_migrated_backends_answer(migrated: Engine) -> None:
    with migrated.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
