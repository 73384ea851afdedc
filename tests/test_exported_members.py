"""The public API is exactly ``__all__``, and the contract's names are all in it."""

import textstack_sdk

CONTRACT = {
    "Authorized", "Pending", "Failed", "TokenResult", "TokenProvider", "StaticTokenProvider",
    "TokenManager", "provider_from_env", "TokenCache", "FileTokenCache", "default_cache_path",
    "TextStackApiClient", "TextStackError", "AuthorizationRequired", "AuthorizationError",
    "ApiError", "TransportError", "ConfigurationError",
}  # fmt: skip


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(textstack_sdk) if not name.startswith("_")}
    # Submodules imported as a side effect are not API.
    public -= {"testing", "cli", "mcp"}
    assert set(textstack_sdk.__all__) - {"__version__"} == public


def test_every_exported_name_resolves() -> None:
    for name in textstack_sdk.__all__:
        assert getattr(textstack_sdk, name) is not None


def test_the_contract_names_are_exported() -> None:
    assert set(textstack_sdk.__all__) >= CONTRACT


def test_one_exception_root() -> None:
    for name in textstack_sdk.__all__:
        obj = getattr(textstack_sdk, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, textstack_sdk.TextStackError), name


def test_every_public_class_states_its_thread_safety() -> None:
    for name in textstack_sdk.__all__:
        obj = getattr(textstack_sdk, name)
        if not isinstance(obj, type) or issubclass(obj, BaseException):
            continue
        doc = (obj.__doc__ or "").lower()
        assert any(w in doc for w in ("thread-safe", "immutable", "thread safe")), name
