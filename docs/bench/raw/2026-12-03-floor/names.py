"""The name section of a Wasm module: function index -> name."""


def leb(data, i):
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def read_names(path):
    data, i, names = open(path, "rb").read(), 8, {}
    while i < len(data):
        n, j = leb(data, i + 1)
        end = j + n
        if data[i] == 0:
            n, k = leb(data, j)
            if data[k:k + n] == b"name":
                k += n
                while k < end:
                    sub = data[k]
                    n, k = leb(data, k + 1)
                    if sub == 1:
                        count, q = leb(data, k)
                        for _ in range(count):
                            index, q = leb(data, q)
                            n_name, q = leb(data, q)
                            names[index] = data[q:q + n_name].decode("utf8", "replace")
                            q += n_name
                    k += n
        i = end
    return names
