"""echo [WORD...]: the words, one blank apart, and a newline on stdout."""


from redleaf.rv6 import ulib



def main(argv):
    ulib.write(1, (" ".join(argv[1:]) + "\n").encode())
    return 0
