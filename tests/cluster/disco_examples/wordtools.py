"""A module of the user's, next to the job script: Disco's module scanner must find it in
the map function and ship it with the job (the slaves do not have it)."""


def normalize(word):
    if isinstance(word, bytes):  # Disco on Python 3 hands a map bytes lines
        word = word.decode("utf-8")
    return word.strip(".,;:!?").lower()
